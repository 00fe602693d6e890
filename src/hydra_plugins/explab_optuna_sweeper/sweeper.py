"""A Hydra sweeper on Optuna's ask/tell interface.

One trial at a time per process: ask, launch the job with the sampled overrides, tell the result. Several
processes pointed at one storage share the study, so parallelism comes from workers that never wait for a
batch. ``n_trials`` counts finished trials (COMPLETE + PRUNED) of the whole study, so running the same
command again resumes it, and extra workers stop once the study is full.

Samplers propose points that already ran: TPE did in 2 of 12 trials on the 24-point digits space. With
``skip_repeats`` (the default) such a trial is told the earlier trial's value at once, nothing is trained,
and it does not count towards ``n_trials``; the search stops once ``n_trials`` proposals in a row repeat.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Mapping
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from explab.sweep import REPEATS_ATTR, is_repeat

log = logging.getLogger(__name__)

WORKER_ATTR = "explab.worker"
PARENT_RUN_ATTR = "explab.mlflow_parent_run_id"


class SweepAborted(RuntimeError):
    """Too many trials failed in a row: the search space or the code is broken, not one trial."""


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _trained_trials(study: Any, states: tuple[Any, ...] | None = None) -> list[Any]:
    """The study's trials (in ``states``), repeats left out: they were told a value and trained nothing."""
    return [t for t in study.get_trials(deepcopy=False, states=states) if not is_repeat(t)]


def _tell_once(study: Any, trial: Any, value: float | None, state: Any) -> None:
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as err:  # GridSampler stops the study when the grid is exhausted
        if "Study.stop" not in str(err):
            raise


class ExplabOptunaSweeper(Sweeper):
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
        self.sampler_cfg = sampler
        self.pruner_cfg = pruner
        self.params = _plain(params) or {}
        self.mlflow_cfg = _plain(mlflow) or None
        self.check = check
        self.max_failures = max_failures
        self.skip_repeats = bool(skip_repeats)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # ---------------------------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[Any]:
        import optuna

        from explab.sweep.space import grid_of, parse_search_space
        from explab.sweep.storage import open_storage, remember_study

        space, fixed = parse_search_space(self.params, arguments)
        if not space:
            raise ValueError(
                "nothing to search: give hydra.sweeper.params or sweep overrides such as "
                "'optimizer.lr=tag(log, interval(1e-4, 1e-1))'"
            )
        self._run_check(fixed)

        n_trials = self.n_trials
        storage = open_storage(self.storage_url)
        sampler_kwargs: dict[str, Any] = {}
        sampler_cfg = dict(_plain(self.sampler_cfg) or {})
        is_grid = str(sampler_cfg.get("_target_", "")).endswith("GridSampler")
        # a grid picks its point inside ask(); any other seeded sampler is seeded per trial (see _ask)
        reseed = sampler_cfg.get("seed") is not None and not is_grid
        if is_grid:
            grid = grid_of(space)
            sampler_kwargs["search_space"] = grid
            n_trials = min(n_trials, math.prod(len(v) for v in grid.values()))
        sampler = self._sampler(0, **sampler_kwargs)
        pruner = instantiate(self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner()
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            direction=self.direction,
            load_if_exists=True,
        )
        remember_study(study, self.storage_url)
        self._fail_orphans(study)
        log.info(
            "Study '%s' (%s, %s, %s): %d/%d trials finished",
            study.study_name,
            type(sampler).__name__,
            type(pruner).__name__,
            self.direction,
            self._progress(study)[0],
            n_trials,
        )
        parent = self._parent_run(study, space, sampler, pruner)

        from explab.utils.signals import interrupts_deferred

        returns: list[Any] = []
        failures = repeats = 0
        max_failures = self.max_failures or n_trials
        trial = None
        try:
            while True:
                finished, running = self._progress(study)
                if finished + running >= n_trials or self._grid_exhausted(sampler, study):
                    break
                with interrupts_deferred():  # a trial created but not yet held here could not be failed
                    trial = self._ask(study, space, reseed)
                    trial.set_user_attr(WORKER_ATTR, self.worker)
                if self._is_surplus(study, trial.number, n_trials):
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    log.info("trial %d not run: another worker filled the study first", trial.number)
                    break
                twin = self._finished_twin(study, trial) if self.skip_repeats else None
                if twin is not None:
                    self._tell_repeat(study, trial, twin)
                    trial = None
                    repeats += 1
                    if repeats >= n_trials:
                        log.warning(
                            "the last %d proposals all repeated finished trials: the search space looks "
                            "exhausted, so the sweep stops here",
                            repeats,
                        )
                        break
                    continue
                repeats = 0
                state, result = self._run_trial(study, trial, fixed, parent)
                trial = None
                returns.append(result)
                failures = failures + 1 if state == optuna.trial.TrialState.FAIL else 0
                if failures >= max_failures:
                    raise SweepAborted(
                        f"{failures} trials failed in a row; the last error was: {result}. "
                        "Fix the search space or the code, then run the same command to resume."
                    )
        except BaseException as error:
            if trial is not None:  # interrupted between asking and telling: never leave it RUNNING
                self._fail_if_running(study, trial)
            if parent is not None:
                self._end_parent(study, parent, error, n_trials)
            raise
        if parent is not None:
            self._end_parent(study, parent, None, n_trials)
        self._log_best(study)
        return returns

    # ---------------------------------------------------------------------------------------------------
    def _sampler(self, trial_number: int, **kwargs: Any) -> Any:
        """The configured sampler; a seeded one is seeded with ``seed + trial number``."""
        config = dict(_plain(self.sampler_cfg) or {})
        if config.get("seed") is not None:
            config["seed"] = int(config["seed"]) + trial_number
        return instantiate(config, **kwargs)

    def _ask(self, study: Any, space: Mapping[str, Any], reseed: bool) -> Any:
        """A new trial, sampled with a seed of its own number when a seed is set.

        The number is handed out atomically by the storage before anything is sampled, so workers that ask
        in the same instant still draw different values, and a resumed study does not replay its first
        draws, while one worker with a fixed seed stays reproducible.
        """
        from explab.sweep.space import suggest

        trial = study.ask()
        if reseed:
            study.sampler = self._sampler(trial.number)
        for name, distribution in space.items():
            suggest(trial, name, distribution)
        return trial

    def _run_check(self, fixed: list[str]) -> None:
        if not self.check:
            return
        assert self.hydra_context is not None and self.config is not None
        job_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(fixed))
        get_method(self.check.replace(":", "."))(job_config, self.metric)

    @staticmethod
    def _progress(study: Any) -> tuple[int, int]:
        """(finished, running) trials of the study; repeats of finished trials count as neither."""
        from optuna.trial import TrialState

        trials = _trained_trials(study)
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        return finished, sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)

    @staticmethod
    def _finished_twin(study: Any, trial: Any) -> Any:
        """The earliest COMPLETE trial that ran exactly these values, or None."""
        from optuna.trial import TrialState

        return next((t for t in _trained_trials(study, (TrialState.COMPLETE,)) if t.params == trial.params), None)

    @staticmethod
    def _tell_repeat(study: Any, trial: Any, twin: Any) -> None:
        from optuna.trial import TrialState

        trial.set_user_attr(REPEATS_ATTR, twin.number)
        _tell_once(study, trial, twin.value, TrialState.COMPLETE)
        log.info(
            "trial %d repeats trial %d %s: told its value %.6g, nothing trained",
            trial.number,
            twin.number,
            trial.params,
            twin.value,
        )

    @staticmethod
    def _fail_if_running(study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
            study.tell(trial, state=TrialState.FAIL)

    @staticmethod
    def _grid_exhausted(sampler: Any, study: Any) -> bool:
        """A grid is done once every point ran, failed points included: re-running them would fail again."""
        import optuna

        return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)

    @staticmethod
    def _is_surplus(study: Any, number: int, n_trials: int) -> bool:
        """Two workers may ask in the same instant; the later-numbered trial beyond n_trials stands down."""
        from optuna.trial import TrialState

        taken = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        earlier = [t for t in _trained_trials(study, taken) if t.number < number]
        return len(earlier) >= n_trials

    def _fail_orphans(self, study: Any) -> None:
        """Trials left RUNNING by a killed worker of this host would block the study forever."""
        from optuna.trial import TrialState

        from explab.tracking.orphans import process_alive

        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker_host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
            if worker_host != host or not pid.isdigit() or process_alive(int(pid)):
                continue
            study.tell(trial.number, state=TrialState.FAIL)
            log.warning("trial %d was left RUNNING by a dead worker (pid %s): marked FAIL", trial.number, pid)

    def _handoff(self, study: Any, trial_number: int, parent: Any) -> list[str]:
        overrides = [f"++optuna_trial.study_name={_quote(study.study_name)}", f"++optuna_trial.number={trial_number}"]
        if self.storage_url:
            overrides.append(f"++optuna_trial.storage={_quote(self.storage_url)}")
        if parent is not None:
            overrides.append(f"++optuna_trial.parent_run_id={parent.run_id}")
        return overrides

    def _run_trial(self, study: Any, trial: Any, fixed: list[str], parent: Any) -> tuple[Any, Any]:
        import optuna
        from optuna.trial import TrialState

        from explab.sweep.space import as_override

        sampled = [as_override(key, value) for key, value in trial.params.items()]
        overrides = [*fixed, *sampled, *self._handoff(study, trial.number, parent)]
        assert self.launcher is not None
        try:
            [ret] = self.launcher.launch([overrides], initial_job_idx=trial.number)
        except Exception as error:  # the job's config did not even compose
            return self._tell(study, trial, TrialState.FAIL, None, error), error
        except BaseException:
            self._tell(study, trial, TrialState.FAIL, None, "interrupted")
            raise
        if ret.status != JobStatus.COMPLETED:
            error = ret._return_value
            if isinstance(error, optuna.TrialPruned):
                return self._tell(study, trial, TrialState.PRUNED, None, error), error
            return self._tell(study, trial, TrialState.FAIL, None, error), error
        try:
            value = self._objective(ret.return_value)
        except (KeyError, TypeError, ValueError) as error:
            return self._tell(study, trial, TrialState.FAIL, None, error), error
        return self._tell(study, trial, TrialState.COMPLETE, value, None), ret.return_value

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

    def _tell(self, study: Any, trial: Any, state: Any, value: float | None, error: Any) -> Any:
        if error is not None and state.name == "FAIL":
            study._storage.set_trial_user_attr(trial._trial_id, "explab.error", str(error)[:2000])
            log.warning("trial %d FAIL: %s", trial.number, error)
        _tell_once(study, trial, value, state)
        log.info(
            "trial %d %s%s %s", trial.number, state.name, f" {value:.6g}" if value is not None else "", trial.params
        )
        return state

    # ---------------------------------------------------------------------------------------------------
    def _parent_run(self, study: Any, space: Mapping[str, Any], sampler: Any, pruner: Any) -> Any:
        if not self.mlflow_cfg:
            return None
        from explab.tracking import TrackedRun

        uri = self.mlflow_cfg["tracking_uri"]
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if run_id:
            run = TrackedRun(uri, run_id)
            run.client.update_run(run_id, status="RUNNING")
            return run
        run = TrackedRun.create(
            tracking_uri=uri,
            experiment_name=self.mlflow_cfg.get("experiment_name") or study.study_name,
            artifact_location=self.mlflow_cfg.get("artifact_location"),
            run_name=f"sweep-{study.study_name}",
            tags={
                "explab.sweep": "parent",
                "optuna.study_name": study.study_name,
                "optuna.sampler": type(sampler).__name__,
                "optuna.pruner": type(pruner).__name__,
                "optuna.direction": self.direction,
                "optuna.metric": str(self.metric),
                "optuna.n_trials": str(self.n_trials),
                "optuna.search_space": "; ".join(f"{k}: {v}" for k, v in space.items())[:5000],
            },
        )
        winner = self._elect_parent(run, study.study_name)
        study.set_user_attr(PARENT_RUN_ATTR, winner)
        if winner != run.run_id:  # another worker created the parent a moment earlier
            run.client.delete_run(run.run_id)
            return TrackedRun(uri, winner)
        return run

    @staticmethod
    def _elect_parent(run: Any, study_name: str) -> str:
        """Workers that start together each create a parent; all agree on the earliest and drop their own."""
        found = run.client.search_runs(
            [run.experiment_id],
            filter_string=f"tags.`explab.sweep` = 'parent' and tags.`optuna.study_name` = '{study_name}'",
            max_results=100,
        )
        earliest = min(found, key=lambda r: (r.info.start_time, r.info.run_id), default=None)
        return earliest.info.run_id if earliest is not None else run.run_id

    def _end_parent(self, study: Any, parent: Any, error: BaseException | None, n_trials: int) -> None:
        from explab.sweep.summary import summarise_study
        from explab.tracking import run_status_for

        try:
            summarise_study(study, parent)
        except Exception as summary_error:
            log.warning("could not summarise the sweep in MLflow: %s", summary_error)
        finished, running = self._progress(study)
        if error is not None:
            parent.finish(run_status_for(error))
        elif finished >= n_trials or running == 0:
            parent.finish("FINISHED")
        log.info("MLflow parent run %s: %d/%d trials finished", parent.run_id, finished, n_trials)

    def _log_best(self, study: Any) -> None:
        from explab.sweep.summary import best_trained_trial

        try:
            best = best_trained_trial(study)
        except ValueError:
            log.warning("no trial completed")
            return
        log.info("Best trial %d: %s = %.6g with %s", best.number, self.metric or "value", best.value, best.params)
