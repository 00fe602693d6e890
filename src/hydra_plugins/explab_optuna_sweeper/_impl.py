"""The sweeper's implementation: Optuna's ask/tell loop around Hydra's launcher.

One trial at a time per process: ask, launch the job with the sampled overrides, tell the result. Several
processes pointed at one storage share the study, so parallelism comes from workers that never wait for a
batch. ``n_trials`` counts finished trials (COMPLETE + PRUNED) of the whole study, so running the same
command again resumes it, and extra workers stop once the study is full.

``n_jobs=K`` makes the command a pool of K such workers on this machine (``explab.sweep.workers``);
``detach=true`` submits them as SLURM jobs instead (``explab.sweep.slurm``). A trial whose worker is gone
(killed, preempted, its node lost) is adopted by the next free worker under its own number and continues
from its checkpoint (``explab.sweep.continuation``). A resumed study must be searched as it was started
(``explab.sweep.study_record``).

Samplers propose points that already ran. With ``skip_repeats`` (the default) such a trial is told the
earlier trial's value at once, nothing is trained, and it does not count towards ``n_trials``; the search
stops once ``n_trials`` proposals in a row repeat.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import socket
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from explab.config import overrides_of
from explab.errors import ExplabError, UsageError, counted, no_room_behind, without_frames
from explab.sweep import REPLICATE_ATTR, is_replicate, named_function
from explab.sweep.checks import (
    check_space_composes,
    metric_needed,
    selected_by_seed,
    selected_on_test,
    unpruned_objective,
    what_goes_unrecorded,
)
from explab.sweep.continuation import fail_run_of_trial
from explab.sweep.heartbeat import (
    CUT_OFFS_ATTR,
    MAX_CUT_OFFS,
    claim_cut_off_trial,
    fail_trials_of_dead_workers,
    heartbeat,
    mark_as_mine,
    unmarked_running,
)
from explab.sweep.objectives import Objectives
from explab.sweep.parent_run import close_parent_run, open_parent_run
from explab.sweep.progress import beyond_n_trials, grid_exhausted, progress, study_full
from explab.sweep.pruner import build_pruner, check_pruner, pruner_name, record_pruner
from explab.sweep.replicates import SEED_ATTR, missing, replicate_seeds, top_configurations
from explab.sweep.slurm import (
    check_slurm_here,
    check_storage_reaches_every_node,
    is_slurm_launcher,
    slurm_executor,
    submission_error,
    submit_workers,
)
from explab.sweep.space import (
    Condition,
    as_override,
    grid_of,
    parse_conditions,
    parse_search_space,
    sampling_order,
    settle_pinned_conditions,
    suggest,
)
from explab.sweep.storage import absolute_storage, open_storage, remember_study, storage_file
from explab.sweep.study_record import check_definition, sweep_definition
from explab.sweep.summary import describe_progress, none_completed, write_results
from explab.sweep.telling import completed_duplicate, hold_trial, tell, tell_job_error, tell_once, tell_repeat
from explab.sweep.warm_start import add_warm_start, check_sources, configured_values, enqueue_once
from explab.sweep.workers import (
    POOL_ENV,
    WorkerPool,
    gpu_per_worker,
    is_pool_worker,
    this_command,
    threads_per_worker,
    visible_gpus,
)
from explab.tracking import TrackedRun
from explab.tracking.full_store import quiet_mlflow_about_room
from explab.tracking.run import stop_described
from explab.tracking.store import check_recordable
from explab.utils.exits import exit_as_error
from explab.utils.logging import logger_at_least
from explab.utils.signals import held, stop_behind, stop_signals_raise_terminated

log = logging.getLogger(__name__)

SearchSpace = Mapping[str, BaseDistribution]


class SweepAborted(ExplabError, RuntimeError):
    """Too many trials failed in a row: the search space or the code is broken, not one trial."""


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ExplabOptunaSweeperImpl(Sweeper):
    """Settings as in ``ExplabOptunaSweeperConf``; ``sweep`` runs the study until it holds ``n_trials``."""

    def __init__(
        self,
        direction: Any,
        metric: Any,
        n_trials: int,
        study_name: str | None,
        storage: str | None,
        sampler: Any,
        pruner: Any,
        params: Any,
        mlflow: Any,
        check: str | None,
        max_failures: int | None,
        skip_repeats: bool = True,
        n_jobs: int = 1,
        trials_per_gpu: int | None = None,
        detach: bool = False,
        allow_changes: bool = False,
        heartbeat_seconds: float = 30.0,
        search_space: Any = None,
        custom_search_space: str | None = None,
        max_failure_rate: float | None = None,
        reference_point: Any = None,
        warm_start: Any = None,
        enqueue: Any = None,
        replicates: int = 1,
        replicate_top: int = 3,
        seed_key: str = "seed",
    ) -> None:
        super().__init__()
        # checked in sweep(), where a bad setting becomes a message instead of a traceback
        self.direction_setting, self.metric_setting = _plain(direction), _plain(metric)
        self.objectives = Objectives(("minimize",), ())
        self.n_trials = n_trials
        self.study_name = study_name
        self.storage_url = storage
        self.sampler_cfg: dict[str, Any] = dict(_plain(sampler) or {})
        self.pruner_cfg: dict[str, Any] | None = _plain(pruner) or None
        # hydra-optuna-sweeper 1.1 took {type, low, high} specs under search_space; params wins a clash
        self.params = {**(_plain(search_space) or {}), **(_plain(params) or {})}
        self.custom_search_space = custom_search_space
        self.mlflow_cfg: dict[str, Any] | None = _plain(mlflow) or None
        self.check = check
        self.max_failures = max_failures
        self.max_failure_rate = max_failure_rate
        self.reference_point = _plain(reference_point)
        self.warm_start: list[dict[str, Any]] = list(_plain(warm_start) or [])
        self.enqueue: list[dict[str, Any]] = list(_plain(enqueue) or [])
        self.warm_start_record: list[str] = []
        self.replicates, self.replicate_top, self.seed_key = replicates, replicate_top, seed_key
        self._composed_job: DictConfig | None = None
        self.skip_repeats = bool(skip_repeats)
        self.n_jobs = n_jobs
        self.trials_per_gpu = trials_per_gpu
        self.detach = bool(detach)
        self.allow_changes = bool(allow_changes)
        self.heartbeat_seconds = float(heartbeat_seconds)
        self.accepted_changes: list[str] = []
        self.conditions: dict[str, Condition] = {}
        self.order: list[str] = []
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.shell_uri: str | None = None
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[Any]:
        """Run trials until the study holds ``n_trials`` finished ones; return what each launched job returned.

        SIGTERM anywhere in the sweep, like Ctrl-C, fails the trial in hand and ends the parent run KILLED;
        inside a SLURM job (a preemption) the trial is left to be continued instead.
        """
        self.shell_uri = os.environ.get("MLFLOW_TRACKING_URI")  # before a trial's MLflow sets it in this process
        quiet_mlflow_about_room()  # a full store is said once, by _stop_says_how_to_go_on
        self._check_settings()
        self.storage_url = absolute_storage(self.storage_url)
        space, fixed = self._search_space(arguments)
        if is_pool_worker():  # the pool's process checked, opened the study and owns the parent run
            study, n_trials = self._open_study(space, fixed)
            with self._stop_says_how_to_go_on(study, n_trials):
                self._run_trials(study, space, fixed, self._open_parent_run(study, space, own=False), n_trials)
            return []
        self._check_before_first_trial(space, fixed)
        if self.detach:
            return self._submit_detached_workers(space, fixed)
        assert self.config is not None
        if is_slurm_launcher(self.config.hydra.launcher):
            check_slurm_here()
        gpus = gpu_per_worker(self.n_jobs, self.trials_per_gpu, visible_gpus()) if self._pooled else []
        if len(gpus) > 1:
            return self._run_worker_pool(space, fixed, gpus)
        with stop_signals_raise_terminated():
            study, n_trials = self._open_study(space, fixed)
            with self._stop_says_how_to_go_on(study, n_trials), self._parent_run_held(study, space, n_trials) as parent:
                returns = self._run_trials(study, space, fixed, parent, n_trials)
        self._write_results(study)
        return returns

    @contextmanager
    def _stop_says_how_to_go_on(self, study: optuna.Study, n_trials: int) -> Iterator[None]:
        """A sweep stopped by Ctrl-C or a signal says so, with what the study keeps and how to go on with it;
        one whose records ran out of room (the study's journal, the MLflow store: a full disk, a quota) ends
        with that as its one-line error, instead of a traceback from wherever the write failed."""
        try:
            yield
        except BaseException as error:
            stop = stop_described(error)
            if stop is not None:
                log.warning(
                    "%s: the sweep stopped with %d of %d trials finished, which the study keeps (the trial in hand "
                    "is marked FAIL); the same command goes on with it",
                    stop,
                    progress(study)[0],
                    n_trials,
                )
            elif not isinstance(error, ExplabError) and (reason := no_room_behind(error)) is not None:
                raise UsageError(
                    f"The sweep stopped: its records could not take a write ({reason}) in {self._records_folders()}. "
                    f"The study keeps its {progress(study)[0]} of {n_trials} finished trials; free space "
                    "there (or raise your quota), then the same command goes on with it"
                ) from error
            raise

    def _records_folders(self) -> str:
        """Where the study's storage and the MLflow store keep their files on this machine."""
        from explab.tracking.ui import mlruns_folder

        folders = []
        if self.storage_url and (study_file := storage_file(self.storage_url)) is not None:
            folders.append(study_file.parent.resolve())
        tracking_uri = (self.mlflow_cfg or {}).get("tracking_uri")
        if tracking_uri and (store := mlruns_folder(str(tracking_uri))) is not None:
            folders.append(store.resolve())
        # the study's journal is in the store's folder unless the sweep placed it elsewhere
        outer = [f for f in folders if not any(f != o and f.is_relative_to(o) for o in folders)]
        return " and ".join(dict.fromkeys(map(str, outer))) or "the study's storage or the MLflow store"

    def _write_results(self, study: optuna.Study) -> None:
        """The sweep's outcome, once, from the process the command started: the best trial or the Pareto
        front and the winner over seeds, logged and written to ``optimization_results.yaml``."""
        assert self.config is not None
        # the hparams_search overlays turn these off to keep trials cheap; the winner deserves them
        turned_off = [key for key in ("log_model", "log_plots") if self.config.get(key) is False]
        write_results(study, self.objectives.names(), Path(str(self.config.hydra.sweep.dir)), turned_off)
        if self.replicates > 1 and self.mlflow_cfg and self.mlflow_cfg.get("experiment_name"):
            self._suggest_the_report(study)
        if (why := none_completed(study)) is not None:
            raise SweepAborted(why)

    def _suggest_the_report(self, study: optuna.Study) -> None:
        """The ``explab-report`` command that tables the replicated configurations over their seeds, with the
        intervals the winner was chosen by."""
        from explab.tracking.ui import report_command

        assert self.mlflow_cfg is not None
        command = report_command(
            str(self.mlflow_cfg["experiment_name"]), self.mlflow_cfg["tracking_uri"], self.shell_uri
        )
        metric = self.objectives.names()[0]
        sweep = shlex.quote(f"sweep={study.study_name}")
        log.info("each configuration over its seeds: %s %s ci=pooled metrics=%s", command, sweep, metric)

    # --- many workers -------------------------------------------------------------------------------------
    @property
    def _pooled(self) -> bool:
        return self.n_jobs > 1 or self.trials_per_gpu is not None

    def _check_settings(self) -> None:
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise UsageError(
                f"hydra.sweeper.n_trials must be an integer >= 1 (the finished trials the study holds), got "
                f"{self.n_trials}"
            )
        self.objectives = Objectives.from_settings(self.direction_setting, self.metric_setting)
        if self.objectives.several and self.pruner_cfg:
            raise UsageError(
                f"a study with {len(self.objectives.directions)} objectives cannot be pruned: Optuna's pruners "
                "compare one intermediate value per epoch. Drop the pruner (hydra/sweeper/pruner=none), or "
                "search one objective"
            )
        check_pruner(self.pruner_cfg, self.objectives.directions[0])
        seed = self.sampler_cfg.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise UsageError(f"hydra.sweeper.sampler.seed must be an integer or null (unseeded), got {seed!r}")
        if self.max_failure_rate is not None and not 0.0 <= float(self.max_failure_rate) <= 1.0:
            raise UsageError(f"hydra.sweeper.max_failure_rate must be between 0 and 1, got {self.max_failure_rate}")
        if self.reference_point is not None and len(self.reference_point) != len(self.objectives.directions):
            raise UsageError(
                f"hydra.sweeper.reference_point has {counted(len(self.reference_point), 'value')} for "
                f"{counted(len(self.objectives.directions), 'objective')}"
            )
        check_sources(self.warm_start)
        if not isinstance(self.replicates, int) or self.replicates < 1:
            raise UsageError(
                f"hydra.sweeper.replicates must be an integer >= 1 (the seeds each top configuration is trained "
                f"with; 1: no replicates), got {self.replicates}"
            )
        if self.replicates > 1 and self.objectives.several:
            raise UsageError(
                "hydra.sweeper.replicates ranks the top configurations of one objective; a study of several "
                "objectives has a Pareto front instead. Drop replicates, or search one objective"
            )
        if self.replicates > 1 and (not isinstance(self.replicate_top, int) or self.replicate_top < 1):
            raise UsageError(f"hydra.sweeper.replicate_top must be an integer >= 1, got {self.replicate_top}")
        if not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise UsageError(f"hydra.sweeper.n_jobs must be an integer >= 1 (the worker processes), got {self.n_jobs}")
        if self.heartbeat_seconds <= 0:
            raise UsageError(f"hydra.sweeper.heartbeat_seconds must be > 0, got {self.heartbeat_seconds}")
        if self.custom_search_space:  # found as each trial is drawn, a typo would fail every trial in turn
            try:
                with logger_at_least("hydra.utils", logging.CRITICAL):  # it logs the error this one says
                    named_function(self.custom_search_space)
            except Exception as error:
                raise UsageError(
                    f"hydra.sweeper.custom_search_space={self.custom_search_space} cannot be loaded "
                    f"({' '.join(str(error).split())}): give module.function, the module on the Python path (an "
                    "installed package, or its folder in PYTHONPATH)"
                ) from None

    def _share_study(self) -> None:
        """Workers of one command find one study: a journal in the sweep folder and a name, unless set."""
        assert self.config is not None
        if not self.storage_url:
            self.storage_url = f"journal:///{Path(str(self.config.hydra.sweep.dir)).resolve()}/optuna.journal"
        if not self.study_name:
            self.study_name = f"sweep-{uuid.uuid4().hex[:8]}"

    def _worker_overrides(self, threads: int) -> list[str]:
        """What makes the same command line one worker of this very study."""
        assert self.config is not None
        overrides = [
            "hydra.sweeper.n_jobs=1",
            "hydra.sweeper.trials_per_gpu=null",
            "hydra.sweeper.detach=false",
            f"hydra.sweeper.storage={_quote(str(self.storage_url))}",
            f"hydra.sweeper.study_name={_quote(str(self.study_name))}",
            f"hydra.sweep.dir={_quote(str(Path(str(self.config.hydra.sweep.dir)).resolve()))}",
        ]
        # workers that each took every core would fight over them; an explicit torch_threads is kept
        if "torch_threads" in self.config and self.config.get("torch_threads") is None:
            overrides.append(f"torch_threads={threads}")
        return overrides

    def _run_worker_pool(self, space: SearchSpace, fixed: list[str], gpus: list[str | None]) -> list[Any]:
        """Run ``len(gpus)`` workers of one study until it is full; one summary at the end."""
        self._share_study()
        command = [*this_command(), *self._worker_overrides(threads_per_worker(len(gpus)))]
        environments = [
            {POOL_ENV: str(os.getpid()), **({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {})} for gpu in gpus
        ]
        with stop_signals_raise_terminated():
            study, n_trials = self._open_study(space, fixed)
            with self._stop_says_how_to_go_on(study, n_trials), self._parent_run_held(study, space, n_trials):
                try:
                    log.info("Starting %d workers of study '%s' (%s)", len(gpus), study.study_name, self.storage_url)
                    failed = WorkerPool(command, environments, max_replacements=n_trials).run()
                    if failed and not study_full(study, n_trials):
                        raise SweepAborted(
                            f"{len(failed)} of {len(gpus)} workers failed (exit codes {failed}); their messages are "
                            "above. Fix the cause, then run the same command to resume."
                        )
                finally:  # before the parent run is ended, which counts the study's finished and running trials
                    for trial in fail_trials_of_dead_workers(study):
                        fail_run_of_trial(self._job_config(fixed), trial, "its worker died, and no worker was left")
        log.info("All workers done: %s", describe_progress(study))
        self._write_results(study)
        return []

    def _submit_detached_workers(self, space: SearchSpace, fixed: list[str]) -> list[Any]:
        """Submit ``n_jobs`` SLURM jobs that each run a worker of the study, and return."""
        assert self.config is not None
        launcher = self.config.hydra.launcher
        if not is_slurm_launcher(launcher):
            raise UsageError(
                "hydra.sweeper.detach=true submits its workers as SLURM jobs: add hydra/launcher=slurm "
                f"(the launcher now is {launcher.get('_target_')})"
            )
        check_storage_reaches_every_node(self.storage_url)
        check_slurm_here()
        self._share_study()
        study, n_trials = self._open_study(space, fixed)  # a changed definition is refused here, not in the jobs
        launcher_params = cast(dict[str, Any], OmegaConf.to_container(launcher, resolve=True))
        folder = f"{Path(str(self.config.hydra.sweep.dir)).resolve()}/.submitit/%j"
        executor = slurm_executor(launcher_params, folder)
        threads = int(launcher_params.get("cpus_per_task") or threads_per_worker(1))
        argv = [a for a in this_command() if not a.startswith(("hydra/launcher=", "hydra.launcher."))]
        command = [*argv, *self._worker_overrides(threads), "hydra/launcher=basic"]
        job_ids = submit_workers(executor, [(command, {}) for _ in range(self.n_jobs)])
        log.info(
            "Submitted %d worker jobs (%s) for study '%s' (%d trials); follow it with: explab-sweep status %s "
            "--storage %s; stop it with: scancel %s (the same command goes on with it)",
            len(job_ids),
            ", ".join(job_ids),
            study.study_name,
            n_trials,
            study.study_name,
            self.storage_url,
            " ".join(job_ids),
        )
        return []

    # --- the steps of a sweep ---------------------------------------------------------------------------
    def _search_space(self, arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
        """The distributions to sample, and the overrides every trial gets as they are."""
        space, fixed = parse_search_space(self.params, arguments)
        # a plain value on the command line takes a searched key out of the search, as in Hydra's own sweeper
        for key in parse_search_space(self.params, [])[0].keys() - space.keys():
            log.info("%s is not searched: the command line fixes it (%s)", key, overrides_of(fixed, [key])[0])
        params, space, settled = settle_pinned_conditions(self.params, space, fixed)
        for sentence in settled:
            log.info(sentence)
        if not space:
            raise UsageError(
                "nothing to search: give hydra.sweeper.params or sweep overrides such as "
                "'optimizer.lr=tag(log, interval(1e-4, 1e-1))'"
            )
        self.conditions = parse_conditions(params, space)
        if self.conditions and self._is_grid:
            raise UsageError(
                f"a grid has one fixed set of parameters; {', '.join(sorted(self.conditions))} "
                f"{'is' if len(self.conditions) == 1 else 'are'} sampled only under a condition (when:). Use another "
                "sampler (hydra/sweeper/sampler=tpe), or drop the conditions"
            )
        self.order = sampling_order(space, self.conditions)
        return space, fixed

    def _job_config(self, fixed: list[str]) -> DictConfig:
        """The job's config under the sweep's fixed overrides (no searched value), composed once per process."""
        if self._composed_job is None:
            assert self.hydra_context is not None and self.config is not None
            self._composed_job = self.hydra_context.config_loader.load_sweep_config(self.config, list(fixed))
        return self._composed_job

    def _check_before_first_trial(self, space: SearchSpace, fixed: list[str]) -> None:
        """Run ``hydra.sweeper.check`` on the composed job config, and compose every searched key and choice,
        so a typo fails before the study exists."""
        assert self.hydra_context is not None and self.config is not None
        loader, config = self.hydra_context.config_loader, self.config
        if self.check:  # an explab job, whose sweeps are meant to be kept and recorded
            # a grid is a plain multirun run K at a time (seeds in parallel), kept as its jobs' runs
            unrecorded = None if self._is_grid else what_goes_unrecorded(self.storage_url, self.mlflow_cfg)
            if unrecorded:
                log.warning(unrecorded)
            if self.mlflow_cfg and self.mlflow_cfg.get("tracking_uri"):  # before the study is made there
                check_recordable(str(self.mlflow_cfg["tracking_uri"]))
            job_config = self._job_config(fixed)
            if self.objectives.metric_setting is None:
                raise UsageError(metric_needed(job_config.get("optimized_metric")))
            named_function(self.check)(job_config, self.objectives.metric_setting)
            for said in (
                selected_on_test(self.objectives.metrics),
                unpruned_objective(self.objectives.metrics, self.pruner_cfg),
                selected_by_seed(space, self.seed_key, grid=self._is_grid),
            ):
                if said:
                    log.warning(said)
        check_space_composes(
            lambda overrides: loader.load_sweep_config(config, overrides), space, self.conditions, fixed
        )

    def _open_study(self, space: SearchSpace, fixed: list[str]) -> tuple[optuna.Study, int]:
        """Create the study or load it to resume (searched as it was started); returns it with the number of
        trials it should reach."""
        n_trials = self.n_trials
        grid_kwargs: dict[str, Any] = {}
        if self._is_grid:
            grid = grid_of(space)
            grid_kwargs["search_space"] = grid
            n_trials = min(n_trials, math.prod(len(v) for v in grid.values()))
        sampler = self._sampler(0, **grid_kwargs)
        pruner = build_pruner(self.pruner_cfg)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(self.storage_url),
            sampler=sampler,
            pruner=pruner,
            directions=[StudyDirection[d.upper()] for d in self.objectives.directions],
            load_if_exists=True,
        )
        remember_study(study, self.storage_url)
        definition = sweep_definition(
            space,
            self.objectives.direction_setting,
            self.objectives.metric_setting,
            fixed,
            self.custom_search_space,
            self.conditions,
        )
        self.accepted_changes = check_definition(study, definition, self.allow_changes)
        if self.accepted_changes:
            log.warning("study '%s' resumed with changes: %s", study.study_name, "; ".join(self.accepted_changes))
        record_pruner(study, self.pruner_cfg)
        self._warm_start(study, space, fixed)
        log.info(
            "Study '%s' (%s, %s, %s): %d/%d trials finished",
            study.study_name,
            type(sampler).__name__,
            pruner_name(pruner),
            ", ".join(self.objectives.directions),
            progress(study)[0],
            n_trials,
        )
        return study, n_trials

    def _warm_start(self, study: optuna.Study, space: SearchSpace, fixed: list[str]) -> None:
        """Add the warm-start sources' points and queue ``enqueue``, once per study."""
        if self.warm_start:
            default_uri = (self.mlflow_cfg or {}).get("tracking_uri")
            sources = [{"tracking_uri": default_uri, **s} if "mlflow" in s else s for s in self.warm_start]
            # what an earlier trial that did not search a parameter of this space ran with
            configured = configured_values(self._job_config(fixed), space)
            self.warm_start_record = add_warm_start(
                study, sources, space, self.conditions, self.objectives, configured, fixed
            )
        if self.enqueue:
            enqueue_once(study, self.enqueue, space, self.conditions)

    def _run_trials(
        self, study: optuna.Study, space: SearchSpace, fixed: list[str], parent: TrackedRun | None, n_trials: int
    ) -> list[Any]:
        """Ask, launch and tell until the study is full, a grid is exhausted or every proposal repeats."""
        returns: list[Any] = []
        failures_in_a_row = repeats_in_a_row = failures = 0
        started = datetime.now()  # Optuna's clock: a replicate that failed from here on is not trained again
        max_failures = self.max_failures or n_trials
        state: TrialState | None
        while True:
            replicate: tuple[FrozenTrial, int] | None = None
            adopted = hold_trial(
                study,
                lambda: self._claim(study, space),
                lambda trial: self._run_adopted(study, trial, fixed, parent),
            )
            if adopted is not None:
                state, result = adopted
            elif study_full(study, n_trials):
                replicate = self._next_replicate(study, fixed, n_trials, started)
                if replicate is None and unmarked_running(study):
                    # a worker killed between asking and marking left it: once a beat has passed it is claimed
                    time.sleep(min(1.0, self.heartbeat_seconds))
                    continue
                if replicate is None:
                    break
                state, result = self._run_replicate(study, fixed, parent, *replicate)
            else:
                state, result = self._ask_and_run(study, space, fixed, parent, n_trials)
                if state is None:  # the study filled, or a repeat was told its value
                    if result == "full":
                        break
                    repeats_in_a_row += 1
                    if repeats_in_a_row >= n_trials:
                        log.warning(
                            "the last %d proposals all repeated finished trials: the search space looks "
                            "exhausted, so the sweep stops here",
                            repeats_in_a_row,
                        )
                        break
                    continue
                repeats_in_a_row = 0
            # what a failed or pruned trial raised is kept without its frames, which hold the trial's model
            # and data: kept with them, a long sweep's pruned trials filled the host's memory
            returns.append(without_frames(result) if isinstance(result, BaseException) else result)
            if replicate is not None and state == TrialState.FAIL:
                # a seed a configuration diverged on measures that configuration (the winner ranks it so), not
                # the search: their number is bounded by top x seeds, and none counts towards stopping the sweep
                continue
            failures_in_a_row = failures_in_a_row + 1 if state == TrialState.FAIL else 0
            failures += state == TrialState.FAIL
            if failures_in_a_row >= max_failures:
                raise SweepAborted(
                    f"{counted(failures_in_a_row, 'trial')} failed in a row; "
                    f"the last error was: {str(result).rstrip('.')}. "
                    "Fix the search space or the code, then run the same command to resume."
                )
            if self.max_failure_rate is not None and failures / len(returns) > float(self.max_failure_rate):
                raise SweepAborted(
                    f"{failures} of the {len(returns)} trials run here failed, more than "
                    f"max_failure_rate={self.max_failure_rate}; the last error was: {str(result).rstrip('.')}. "
                    "Fix the cause, then run the same command to resume."
                )
        return returns

    def _next_replicate(
        self, study: optuna.Study, fixed: list[str], n_trials: int, started: datetime
    ) -> tuple[FrozenTrial, int] | None:
        """The next (top trial, seed) to train again once the search is over, but none that failed since this
        worker ``started``; None when there is none, or while other workers still run search trials (the top
        is not known yet: the last of them does it)."""
        if self.replicates <= 1 or (progress(study)[0] < n_trials and not grid_exhausted(study)):
            return None
        base_seed = int(self._job_config(fixed).get(self.seed_key) or 0)
        top = top_configurations(study, self.replicate_top)
        todo = missing(study, top, replicate_seeds(base_seed, self.replicates), started)
        return todo[0] if todo else None

    def _run_replicate(
        self, study: optuna.Study, fixed: list[str], parent: TrackedRun | None, source: FrozenTrial, seed: int
    ) -> tuple[TrialState, Any]:
        """Train ``source``'s configuration again with ``seed``, as a trial marked as its replicate."""

        def take() -> Trial:
            study.enqueue_trial(source.params, user_attrs={REPLICATE_ATTR: source.number, SEED_ATTR: seed})
            trial = study.ask()  # first in, first out: the trial just queued
            for name, distribution in source.distributions.items():
                suggest(trial, name, distribution)
            mark_as_mine(trial, self.worker)
            return trial

        def run(trial: Trial) -> tuple[TrialState, Any]:
            log.info(
                "trial %d: trial %d's configuration again, %s=%d", trial.number, source.number, self.seed_key, seed
            )
            return self._run_trial(study, trial, fixed, parent)

        return cast(tuple[TrialState, Any], hold_trial(study, take, run))

    def _ask_and_run(
        self, study: optuna.Study, space: SearchSpace, fixed: list[str], parent: TrackedRun | None, n_trials: int
    ) -> tuple[TrialState | None, Any]:
        """Ask a new trial and run it: (its state, the job's result); (None, "full") when another worker filled
        the study first, (None, "repeat") when it repeated a finished trial and was told its value."""

        def run(trial: Trial) -> tuple[TrialState | None, Any]:
            if beyond_n_trials(study, trial.number, n_trials):
                tell_once(study, trial, None, TrialState.FAIL)
                log.info("trial %d not run: another worker filled the study first", trial.number)
                return None, "full"
            rejected = self._define_by_run(study, trial)
            if rejected is not None:
                return rejected
            duplicate = completed_duplicate(study, trial) if self.skip_repeats else None
            if duplicate is not None:
                tell_repeat(study, trial, duplicate)
                return None, "repeat"
            return self._run_trial(study, trial, fixed, parent)

        return cast(tuple[TrialState | None, Any], hold_trial(study, lambda: self._ask(study, space), run))

    def _open_parent_run(self, study: optuna.Study, space: SearchSpace, own: bool = True) -> TrackedRun | None:
        """The study's MLflow parent run (``explab.sweep.parent_run``); None when the sweep records none."""
        if not self.mlflow_cfg:
            return None
        tags = {
            "optuna.sampler": type(study.sampler).__name__,
            "optuna.pruner": pruner_name(study.pruner),
            "optuna.direction": ", ".join(self.objectives.directions),
            "optuna.metric": ", ".join(self.objectives.names()),
            "optuna.n_trials": str(self.n_trials),
            "optuna.search_space": "; ".join(
                f"{k}: {v}" + (f" when {self.conditions[k]}" if k in self.conditions else "") for k, v in space.items()
            )[:5000],
        }
        parent = open_parent_run(study, self.mlflow_cfg, tags, own)
        if own:  # what this command did to the study before its first trial
            if self.accepted_changes:
                parent.set_tags({"explab.sweep_changed": "; ".join(self.accepted_changes)[:5000]})
            if self.warm_start_record:
                parent.set_tags({"explab.warm_start": "; ".join(self.warm_start_record)[:5000]})
        return parent

    @contextmanager
    def _parent_run_held(self, study: optuna.Study, space: SearchSpace, n_trials: int) -> Iterator[TrackedRun | None]:
        """The study's parent run (None when the sweep records none), opened here and ended on the way out:
        by the error that ends the block, or as ``close_parent_run`` decides from the study's progress.

        Ctrl-C and SIGTERM wait while it is opened: one landing between the store creating it and ``parent``
        naming it would leave it RUNNING with nobody to end it.
        """
        with held(
            lambda: self._open_parent_run(study, space),
            lambda parent, error: self._close_parent_run(study, parent, error, n_trials),
        ) as parent:
            yield parent

    def _close_parent_run(
        self, study: optuna.Study, parent: TrackedRun | None, error: BaseException | None, n_trials: int
    ) -> None:
        if parent is not None:
            close_parent_run(
                study, parent, error, progress(study), n_trials, self.objectives.names(), self.reference_point
            )

    # --- one trial ----------------------------------------------------------------------------------------
    @property
    def _is_grid(self) -> bool:
        return str(self.sampler_cfg.get("_target_", "")).endswith("GridSampler")

    def _sampler(self, trial_number: int, **kwargs: Any) -> optuna.samplers.BaseSampler:
        """The configured sampler; a seeded one is seeded with ``seed + trial number``."""
        config = dict(self.sampler_cfg)
        if config.get("seed") is not None:
            config["seed"] = int(config["seed"]) + trial_number
        with warnings.catch_warnings():
            # explab's TPE sets ``group`` on purpose (conf: SAMPLERS); Optuna calls it experimental each time a
            # sampler is made, and a seeded sweep makes one per trial. A sampler that is experimental as a whole
            # (QMC), chosen by the researcher, still says so
            experimental = optuna.exceptions.ExperimentalWarning
            warnings.filterwarnings("ignore", "Argument ``group`` is an experimental", experimental)
            return instantiate(config, **kwargs)

    def _ask(self, study: optuna.Study, space: SearchSpace) -> Trial:
        """A new trial, sampled with a seed of its own number when a seed is set, and marked as this worker's;
        ``custom_search_space`` suggests more parameters from the values drawn as the trial runs
        (``_define_by_run``).

        The number is handed out atomically by the storage before anything is sampled, so workers that ask
        in the same instant still draw different values, and a resumed study does not replay its first
        draws, while one worker with a fixed seed stays reproducible. A grid picks its point inside ``ask``
        and keeps its one sampler.
        """
        trial = study.ask()
        self._sample(study, trial, space)
        mark_as_mine(trial, self.worker)
        return trial

    def _claim(self, study: optuna.Study, space: SearchSpace) -> Trial | None:
        """A cut-off trial, claimed for this worker, with every parameter drawn: a worker killed while asking
        may have left it with some or none (a parameter drawn already keeps its value)."""
        trial = claim_cut_off_trial(study, self.worker, self.heartbeat_seconds)
        if trial is not None:
            self._sample(study, trial, space)
        return trial

    def _run_adopted(
        self, study: optuna.Study, trial: Trial, fixed: list[str], parent: TrackedRun | None
    ) -> tuple[TrialState, Any]:
        """Continue a claimed trial; fail it instead when its workers were cut off more than ``MAX_CUT_OFFS``
        times: the trial itself kills them, and continuing it again would cost the next worker too."""
        cut_offs = int(trial.user_attrs.get(CUT_OFFS_ATTR, 0))
        if cut_offs <= MAX_CUT_OFFS:
            return self._define_by_run(study, trial) or self._run_trial(study, trial, fixed, parent)
        reason = (
            f"its workers were killed {cut_offs} times in this trial without a word (SIGKILL: the kernel's "
            "out-of-memory killer when the trial runs the host out of memory, a crashing library, or kill -9), "
            "so it is failed rather than continued again; `dmesg | grep -i oom` shows whether the kernel killed them"
        )
        fail_run_of_trial(self._job_config(fixed), trial, reason)
        return tell(study, trial, TrialState.FAIL, None, reason), reason

    def _sample(self, study: optuna.Study, trial: Trial, space: SearchSpace) -> None:
        """Draw ``trial``'s parameters of the search space (``params``, each under its condition); Optuna returns
        a parameter already drawn as it was."""
        if self.sampler_cfg.get("seed") is not None and not self._is_grid:
            study.sampler = self._sampler(trial.number)
        for name in self.order:
            condition = self.conditions.get(name)
            if condition is None or condition.holds(trial.params):
                suggest(trial, name, space[name])

    def _define_by_run(self, study: optuna.Study, trial: Trial) -> tuple[TrialState, Any] | None:
        """Have ``custom_search_space`` suggest more parameters from those drawn; None when it did.

        A draw it rejects ends the trial before anything trains: raising ``optuna.TrialPruned`` (a
        combination the space rules out, as in an Optuna objective) makes it PRUNED, and any other error (a bug
        in that function, which may raise for some values only) FAIL, with its traceback in the log. Raised
        out of the sweep, it left the trial RUNNING and stopped the other trials with it.
        """
        if not self.custom_search_space:
            return None
        assert self.config is not None
        try:
            named_function(self.custom_search_space)(self.config, trial)
        except optuna.TrialPruned as pruned:
            log.info("trial %d pruned by custom_search_space %s: %s", trial.number, self.custom_search_space, pruned)
            return tell(study, trial, TrialState.PRUNED, None, pruned), pruned
        except Exception as error:
            log.error(
                "custom_search_space %s raised in trial %d", self.custom_search_space, trial.number, exc_info=True
            )
            said = f"custom_search_space {self.custom_search_space} raised {type(error).__name__}: {error}"
            return tell(study, trial, TrialState.FAIL, None, said), said
        return None

    def _trial_overrides(self, study: optuna.Study, trial_number: int, parent: TrackedRun | None) -> list[str]:
        """``optuna_trial.*``: how the job finds its trial (to report for pruning), its parent run, and the
        metric the study is told, which the job checks it returns before it counts as done."""
        overrides = [f"++optuna_trial.study_name={_quote(study.study_name)}", f"++optuna_trial.number={trial_number}"]
        if self.objectives.metrics:
            quoted = ",".join(_quote(m) for m in self.objectives.metrics)
            overrides.append(f"++optuna_trial.objective=[{quoted}]")
        if self.storage_url:
            overrides.append(f"++optuna_trial.storage={_quote(self.storage_url)}")
        if parent is not None:
            overrides.append(f"++optuna_trial.parent_run_id={parent.run_id}")
        return overrides

    def _run_trial(
        self, study: optuna.Study, trial: Trial, fixed: list[str], parent: TrackedRun | None
    ) -> tuple[TrialState, Any]:
        """Launch the trial's job and tell the study how it ended; returns that state and the job's result.

        Raises:
            SubmissionError: SLURM refused the job; every later trial would be refused too.
        """
        sampled = [as_override(key, value) for key, value in trial.params.items()]
        overrides = [*fixed, *sampled, *self._trial_overrides(study, trial.number, parent)]
        if is_replicate(trial):  # its own seed, and no pruner: it is measured, not searched
            overrides = [o for o in overrides if not o.startswith(f"{self.seed_key}=")]
            overrides += [
                f"{self.seed_key}={trial.user_attrs[SEED_ATTR]}",
                "++optuna_trial.prune=false",
                f"++optuna_trial.replicate_of={trial.user_attrs[REPLICATE_ATTR]}",
            ]
        assert self.launcher is not None
        try:
            with heartbeat(trial, self.heartbeat_seconds):
                [job] = self.launcher.launch([overrides], initial_job_idx=trial.number)
        except SystemExit as exit_:  # Hydra's launcher lets it through: the app's code exited, or a stop
            exited = exit_as_error(exit_)
            if exited is None:
                raise
            return tell(study, trial, TrialState.FAIL, None, exited), exited
        except Exception as error:  # the job's config did not even compose, or SLURM refused it
            stop = stop_behind(error)
            if stop is not None:  # a SIGTERM or Ctrl-C that Hydra's failing cleanup replaced: still a stop
                raise stop from None
            refused = submission_error(error)
            if refused is not None:
                raise refused from None
            return tell(study, trial, TrialState.FAIL, None, error), error
        if job.status != JobStatus.COMPLETED:
            return tell_job_error(study, trial, job)
        try:
            values = self.objectives.values(job.return_value)
        except (KeyError, TypeError, ValueError) as error:
            return tell(study, trial, TrialState.FAIL, None, error), error
        return tell(study, trial, TrialState.COMPLETE, values, None), job.return_value
