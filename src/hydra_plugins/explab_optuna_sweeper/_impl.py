"""The sweeper's implementation: Optuna's ask/tell loop around Hydra's launcher.

One trial at a time per process: ask, launch the job with the sampled overrides, tell the result. Several
processes pointed at one storage share the study, so parallelism comes from workers that never wait for a
batch. ``n_trials`` counts finished trials (COMPLETE + PRUNED) of the whole study, so running the same
command again resumes it, and extra workers stop once the study is full.

Samplers propose points that already ran. With ``skip_repeats`` (the default) such a trial is told the
earlier trial's value at once, nothing is trained, and it does not count towards ``n_trials``; the search
stops once ``n_trials`` proposals in a row repeat.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Mapping
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from explab.errors import ExplabError, UsageError
from explab.sweep import REPEATS_ATTR, is_repeat
from explab.sweep.space import as_override, grid_of, parse_search_space, suggest
from explab.sweep.storage import open_storage, remember_study
from explab.sweep.summary import best_trained_trial, summarise_study
from explab.tracking import TrackedRun, run_status_for
from explab.tracking.environment import host_tags
from explab.tracking.orphans import PID_TAG, process_alive
from explab.utils.signals import interrupts_deferred, sigterm_raises_terminated

log = logging.getLogger(__name__)

WORKER_ATTR = "explab.worker"
PARENT_RUN_ATTR = "explab.mlflow_parent_run_id"
ERROR_ATTR = "explab.error"

SearchSpace = Mapping[str, BaseDistribution]


class SweepAborted(ExplabError, RuntimeError):
    """Too many trials failed in a row: the search space or the code is broken, not one trial."""


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def trained_trials(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
    """The study's trials (in ``states``), repeats left out: they were told a value and trained nothing."""
    return [t for t in study.get_trials(deepcopy=False, states=states) if not is_repeat(t)]


def _tell_once(
    study: optuna.Study, trial: Trial | int, value: float | None, state: TrialState, skip_if_finished: bool = False
) -> None:
    try:
        study.tell(trial, value, state=state, skip_if_finished=skip_if_finished)
    except RuntimeError as err:  # GridSampler stops the study once the grid is exhausted, after the state is set
        if "Study.stop" not in str(err):
            raise


class ExplabOptunaSweeperImpl(Sweeper):
    """Settings as in ``ExplabOptunaSweeperConf``; ``sweep`` runs the study until it holds ``n_trials``."""

    def __init__(
        self,
        direction: str,
        metric: str | None,
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
    ) -> None:
        super().__init__()
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction must be minimize or maximize, got {direction!r}")
        if n_trials < 1:
            raise ValueError(f"hydra.sweeper.n_trials must be >= 1, got {n_trials}")
        self.direction = direction
        self.metric = metric
        self.n_trials = int(n_trials)
        self.study_name = study_name
        self.storage_url = storage
        self.sampler_cfg: dict[str, Any] = dict(_plain(sampler) or {})
        self.pruner_cfg = pruner
        self.params = _plain(params) or {}
        self.mlflow_cfg: dict[str, Any] | None = _plain(mlflow) or None
        self.check = check
        self.max_failures = max_failures
        self.skip_repeats = bool(skip_repeats)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
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

        SIGTERM anywhere in the sweep, like Ctrl-C, fails the trial in hand and ends the parent run KILLED.
        """
        space, fixed = self._search_space(arguments)
        self._check_before_first_trial(fixed)
        with sigterm_raises_terminated():
            study, n_trials = self._open_study(space)
            parent = self._open_parent_run(study, space)
            try:
                returns = self._run_trials(study, space, fixed, parent, n_trials)
            except BaseException as error:
                self._close_parent_run(study, parent, error, n_trials)
                raise
            self._close_parent_run(study, parent, None, n_trials)
        self._log_best(study)
        return returns

    # --- the steps of a sweep ---------------------------------------------------------------------------
    def _search_space(self, arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
        """The distributions to sample, and the overrides every trial gets as they are."""
        space, fixed = parse_search_space(self.params, arguments)
        if not space:
            raise UsageError(
                "nothing to search: give hydra.sweeper.params or sweep overrides such as "
                "'optimizer.lr=tag(log, interval(1e-4, 1e-1))'"
            )
        return space, fixed

    def _check_before_first_trial(self, fixed: list[str]) -> None:
        """Run ``hydra.sweeper.check`` on the composed job config, so a typo fails before any trial."""
        if not self.check:
            return
        assert self.hydra_context is not None and self.config is not None
        job_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(fixed))
        get_method(self.check.replace(":", "."))(job_config, self.metric)

    def _open_study(self, space: dict[str, BaseDistribution]) -> tuple[optuna.Study, int]:
        """Create the study or load it to resume; returns it with the number of trials it should reach."""
        n_trials = self.n_trials
        grid_kwargs: dict[str, Any] = {}
        if self._is_grid:
            grid = grid_of(space)
            grid_kwargs["search_space"] = grid
            n_trials = min(n_trials, math.prod(len(v) for v in grid.values()))
        sampler = self._sampler(0, **grid_kwargs)
        pruner = instantiate(self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner()
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(self.storage_url),
            sampler=sampler,
            pruner=pruner,
            direction=StudyDirection[self.direction.upper()],
            load_if_exists=True,
        )
        remember_study(study, self.storage_url)
        self._fail_trials_of_dead_workers(study)
        log.info(
            "Study '%s' (%s, %s, %s): %d/%d trials finished",
            study.study_name,
            type(sampler).__name__,
            type(pruner).__name__,
            self.direction,
            self._progress(study)[0],
            n_trials,
        )
        return study, n_trials

    def _run_trials(
        self, study: optuna.Study, space: SearchSpace, fixed: list[str], parent: TrackedRun | None, n_trials: int
    ) -> list[Any]:
        """Ask, launch and tell until the study is full, a grid is exhausted or every proposal repeats."""
        returns: list[Any] = []
        failures_in_a_row = repeats_in_a_row = 0
        max_failures = self.max_failures or n_trials
        while not self._study_full(study, n_trials):
            with interrupts_deferred():  # a trial created but not yet held here could not be failed
                trial = self._ask(study, space)
            try:
                if self._beyond_n_trials(study, trial.number, n_trials):
                    _tell_once(study, trial, None, TrialState.FAIL)
                    log.info("trial %d not run: another worker filled the study first", trial.number)
                    break
                duplicate = self._completed_duplicate(study, trial) if self.skip_repeats else None
                if duplicate is not None:
                    self._tell_repeat(study, trial, duplicate)
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
                state, result = self._run_trial(study, trial, fixed, parent)
            except BaseException:  # interrupted between asking and telling: never leave the trial RUNNING
                _tell_once(study, trial, None, TrialState.FAIL, skip_if_finished=True)
                raise
            returns.append(result)
            failures_in_a_row = failures_in_a_row + 1 if state == TrialState.FAIL else 0
            if failures_in_a_row >= max_failures:
                raise SweepAborted(
                    f"{failures_in_a_row} trials failed in a row; the last error was: {result}. "
                    "Fix the search space or the code, then run the same command to resume."
                )
        return returns

    def _open_parent_run(self, study: optuna.Study, space: SearchSpace) -> TrackedRun | None:
        """The study's MLflow parent run: created by the first worker, reopened by every later one."""
        if not self.mlflow_cfg:
            return None
        uri = self.mlflow_cfg["tracking_uri"]
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if run_id:
            run = TrackedRun(uri, run_id)
            run.client.update_run(run_id, status="RUNNING")
            run.set_tags({**host_tags(), PID_TAG: os.getpid()})  # this worker now answers for it
            return run
        run = TrackedRun.create(
            tracking_uri=uri,
            experiment_name=self.mlflow_cfg.get("experiment_name") or study.study_name,
            artifact_location=self.mlflow_cfg.get("artifact_location"),
            run_name=f"sweep-{study.study_name}",
            tags={
                **host_tags(),  # with the pid TrackedRun adds: what closes a parent whose worker was killed
                "explab.sweep": "parent",
                "optuna.study_name": study.study_name,
                "optuna.sampler": type(study.sampler).__name__,
                "optuna.pruner": type(study.pruner).__name__,
                "optuna.direction": self.direction,
                "optuna.metric": str(self.metric),
                "optuna.n_trials": str(self.n_trials),
                "optuna.search_space": "; ".join(f"{k}: {v}" for k, v in space.items())[:5000],
            },
        )
        earliest = self._earliest_parent_run_id(run, study.study_name)
        study.set_user_attr(PARENT_RUN_ATTR, earliest)
        if earliest != run.run_id:  # another worker created the parent a moment earlier
            run.client.delete_run(run.run_id)
            return TrackedRun(uri, earliest)
        return run

    def _close_parent_run(
        self, study: optuna.Study, parent: TrackedRun | None, error: BaseException | None, n_trials: int
    ) -> None:
        """End the parent run (by the error, or FINISHED once nothing runs), then summarise the study on it.

        The status comes first, so an interrupt during the summary cannot leave the parent RUNNING. A parent
        that other workers still use is handed to one of them, so orphan cleanup closes it only once they
        are gone too.
        """
        if parent is None:
            return
        finished, running = self._progress(study)
        if error is not None:
            parent.finish(run_status_for(error))
        elif finished >= n_trials or running == 0:
            parent.finish("FINISHED")
        else:
            self._hand_parent_to_a_running_worker(study, parent)
        log.info("MLflow parent run %s: %d/%d trials finished", parent.run_id, finished, n_trials)
        with interrupts_deferred():
            try:
                summarise_study(study, parent)
            except Exception as summary_error:
                log.warning("could not summarise the sweep in MLflow: %s", summary_error)

    @staticmethod
    def _hand_parent_to_a_running_worker(study: optuna.Study, parent: TrackedRun) -> None:
        workers = [str(t.user_attrs.get(WORKER_ATTR, "")) for t in study.get_trials(states=(TrialState.RUNNING,))]
        host, _, pid = next((w for w in workers if w), "").rpartition(":")
        if pid.isdigit():
            parent.set_tags({"hostname": host, PID_TAG: pid})

    def _log_best(self, study: optuna.Study) -> None:
        try:
            best = best_trained_trial(study)
        except ValueError:
            log.warning("no trial completed")
            return
        log.info("Best trial %d: %s = %.6g with %s", best.number, self.metric or "value", best.value, best.params)

    # --- one trial ----------------------------------------------------------------------------------------
    @property
    def _is_grid(self) -> bool:
        return str(self.sampler_cfg.get("_target_", "")).endswith("GridSampler")

    def _sampler(self, trial_number: int, **kwargs: Any) -> optuna.samplers.BaseSampler:
        """The configured sampler; a seeded one is seeded with ``seed + trial number``."""
        config = dict(self.sampler_cfg)
        if config.get("seed") is not None:
            config["seed"] = int(config["seed"]) + trial_number
        return instantiate(config, **kwargs)

    def _ask(self, study: optuna.Study, space: SearchSpace) -> Trial:
        """A new trial, sampled with a seed of its own number when a seed is set, and marked as this worker's.

        The number is handed out atomically by the storage before anything is sampled, so workers that ask
        in the same instant still draw different values, and a resumed study does not replay its first
        draws, while one worker with a fixed seed stays reproducible. A grid picks its point inside ``ask``
        and keeps its one sampler.
        """
        trial = study.ask()
        if self.sampler_cfg.get("seed") is not None and not self._is_grid:
            study.sampler = self._sampler(trial.number)
        for name, distribution in space.items():
            suggest(trial, name, distribution)
        trial.set_user_attr(WORKER_ATTR, self.worker)
        return trial

    def _trial_overrides(self, study: optuna.Study, trial_number: int, parent: TrackedRun | None) -> list[str]:
        """``optuna_trial.*``: how the job finds its trial (to report for pruning), its parent run, and the
        metric the study is told, which the job checks it returns before it counts as done."""
        overrides = [f"++optuna_trial.study_name={_quote(study.study_name)}", f"++optuna_trial.number={trial_number}"]
        if self.metric:
            overrides.append(f"++optuna_trial.objective={_quote(self.metric)}")
        if self.storage_url:
            overrides.append(f"++optuna_trial.storage={_quote(self.storage_url)}")
        if parent is not None:
            overrides.append(f"++optuna_trial.parent_run_id={parent.run_id}")
        return overrides

    def _run_trial(
        self, study: optuna.Study, trial: Trial, fixed: list[str], parent: TrackedRun | None
    ) -> tuple[TrialState, Any]:
        """Launch the trial's job and tell the study how it ended; returns that state and the job's result."""
        sampled = [as_override(key, value) for key, value in trial.params.items()]
        overrides = [*fixed, *sampled, *self._trial_overrides(study, trial.number, parent)]
        assert self.launcher is not None
        try:
            [job] = self.launcher.launch([overrides], initial_job_idx=trial.number)
        except Exception as error:  # the job's config did not even compose
            return self._tell(study, trial, TrialState.FAIL, None, error), error
        if job.status != JobStatus.COMPLETED:
            return self._tell_job_error(study, trial, job)
        try:
            value = self._objective(job.return_value)
        except (KeyError, TypeError, ValueError) as error:
            return self._tell(study, trial, TrialState.FAIL, None, error), error
        return self._tell(study, trial, TrialState.COMPLETE, value, None), job.return_value

    def _tell_job_error(self, study: optuna.Study, trial: Trial, job: JobReturn) -> tuple[TrialState, Any]:
        try:
            returned = job.return_value  # Hydra re-raises the job's exception here
        except optuna.TrialPruned as pruned:
            return self._tell(study, trial, TrialState.PRUNED, None, pruned), pruned
        except Exception as error:
            return self._tell(study, trial, TrialState.FAIL, None, error), error
        raise AssertionError(f"job of trial {trial.number} ended {job.status} but returned {returned!r}")

    def _objective(self, returned: Any) -> float:
        if isinstance(returned, Mapping):
            if not self.metric:
                raise KeyError("the job returned several metrics; set hydra.sweeper.metric to choose one")
            if self.metric not in returned:
                raise KeyError(f"the job returned no '{self.metric}'; it returned {sorted(returned)}")
            returned = returned[self.metric]
        value = float(returned)
        if not math.isfinite(value):
            raise ValueError(f"objective is {value}")
        return value

    def _tell(
        self, study: optuna.Study, trial: Trial, state: TrialState, value: float | None, error: object
    ) -> TrialState:
        if error is not None and state == TrialState.FAIL:
            trial.set_user_attr(ERROR_ATTR, str(error)[:2000])
            log.warning("trial %d FAIL: %s", trial.number, error)
        _tell_once(study, trial, value, state)
        log.info(
            "trial %d %s%s %s", trial.number, state.name, f" {value:.6g}" if value is not None else "", trial.params
        )
        return state

    @staticmethod
    def _tell_repeat(study: optuna.Study, trial: Trial, duplicate: FrozenTrial) -> None:
        trial.set_user_attr(REPEATS_ATTR, duplicate.number)
        _tell_once(study, trial, duplicate.value, TrialState.COMPLETE)
        log.info(
            "trial %d repeats trial %d %s: told its value %.6g, nothing trained",
            trial.number,
            duplicate.number,
            trial.params,
            duplicate.value,
        )

    # --- the study's state --------------------------------------------------------------------------------
    @staticmethod
    def _progress(study: optuna.Study) -> tuple[int, int]:
        """(finished, running) trials of the study; repeats of finished trials count as neither."""
        trials = trained_trials(study)
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        return finished, sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)

    def _study_full(self, study: optuna.Study, n_trials: int) -> bool:
        """Enough trials finished or running, or (a grid) every point ran, failed ones included: they would
        fail again."""
        finished, running = self._progress(study)
        if finished + running >= n_trials:
            return True
        return isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study)

    @staticmethod
    def _beyond_n_trials(study: optuna.Study, number: int, n_trials: int) -> bool:
        """Two workers may ask in the same instant; the later-numbered trial beyond n_trials stands down."""
        taken = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        earlier = [t for t in trained_trials(study, taken) if t.number < number]
        return len(earlier) >= n_trials

    @staticmethod
    def _completed_duplicate(study: optuna.Study, trial: Trial) -> FrozenTrial | None:
        """The earliest COMPLETE trial that ran exactly these values, or None."""
        return next((t for t in trained_trials(study, (TrialState.COMPLETE,)) if t.params == trial.params), None)

    @staticmethod
    def _fail_trials_of_dead_workers(study: optuna.Study) -> None:
        """Trials left RUNNING by a killed worker of this host would block the study forever."""
        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker_host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
            if worker_host != host or not pid.isdigit() or process_alive(int(pid)):
                continue
            study.tell(trial.number, state=TrialState.FAIL)
            log.warning("trial %d was left RUNNING by a dead worker (pid %s): marked FAIL", trial.number, pid)

    @staticmethod
    def _earliest_parent_run_id(run: TrackedRun, study_name: str) -> str:
        """Workers that start together each create a parent; all agree on the earliest and drop their own."""
        found = run.client.search_runs(
            [run.experiment_id],
            filter_string=f"tags.`explab.sweep` = 'parent' and tags.`optuna.study_name` = '{study_name}'",
            max_results=100,
        )
        earliest = min(found, key=lambda r: (r.info.start_time, r.info.run_id), default=None)
        return earliest.info.run_id if earliest is not None else run.run_id
