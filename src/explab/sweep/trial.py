"""A training job's side of a sweep: tags that link it to its study, pruning, and its final state."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import lightning as L
from omegaconf import DictConfig

from explab.errors import ExplabError, UsageError, no_room_behind, raised_in
from explab.sweep.objectives import reported_each_epoch
from explab.sweep.pruning import OptunaPruning
from explab.tracking.run import is_trial_pruned

if TYPE_CHECKING:
    from explab.tracking import TrackedRun

OPTUNA_STORAGE_CODE = f"{os.sep}optuna{os.sep}storages{os.sep}"  # the study's storages, the journal's included


class TrialJob:
    """What a job launched by the sweeper needs from its trial; empty (falsy) for a job outside a sweep.

    Built from ``cfg.optuna_trial`` (study_name, number, storage, parent_run_id, the study's ``objective``
    metrics; for a replicate of a top trial ``replicate_of`` and ``prune=false``), which the sweeper sets on
    each job it launches. The pruner follows what the study optimises: its one objective metric, else
    ``cfg.optimized_metric``; it is left out for a metric no validation epoch logs (``test/``, ``perf/``), which
    it could not report.
    """

    def __init__(self, cfg: DictConfig) -> None:
        self.optuna_trial: DictConfig | None = cfg.get("optuna_trial")
        objectives = self.objectives()
        # hydra.sweeper.metric=val/loss with the recipe's optimized_metric=val/acc_best reported accuracies to
        # a study minimising the loss: the pruner stopped the trials with the best accuracy
        self.monitor: str | None = objectives[0] if len(objectives) == 1 else cfg.get("optimized_metric")
        prune = bool(self.optuna_trial and self.optuna_trial.get("prune", True))
        prune = prune and reported_each_epoch(str(self.monitor or ""))
        self.pruning = OptunaPruning(self.optuna_trial, str(self.monitor)) if prune else None

    def objectives(self) -> list[str]:
        """The metrics the job's study optimises, one per objective; empty outside a sweep or where the sweep
        names none (its jobs return one number)."""
        found = self.optuna_trial.get("objective") if self.optuna_trial else None
        if not found:
            return []
        return [str(found)] if isinstance(found, str) else [str(name) for name in found]

    def __bool__(self) -> bool:
        return bool(self.optuna_trial)

    def tags(self) -> dict[str, Any]:
        """The child run's link to its study, trial and parent run."""
        if not self.optuna_trial:
            return {}
        tags = {"optuna.study_name": self.optuna_trial.study_name, "optuna.trial_number": self.optuna_trial.number}
        if self.optuna_trial.get("parent_run_id"):
            tags["mlflow.parentRunId"] = self.optuna_trial.parent_run_id
        if self.optuna_trial.get("replicate_of") is not None:
            tags["explab.replicate_of"] = self.optuna_trial.replicate_of
        return tags

    def remember_run(self, run_id: str) -> None:
        """Record the job's MLflow run on its trial: whoever runs the trial again continues that run."""
        if self.optuna_trial:
            from explab.sweep.continuation import remember_run_of_trial

            remember_run_of_trial(self.optuna_trial, run_id)

    def run_name(self) -> str | None:
        return f"trial-{self.optuna_trial.number}" if self.optuna_trial else None

    def callbacks(self) -> list[L.Callback]:
        if not self.optuna_trial:
            return []
        from explab.sweep.watch import TrialWatch

        # the watch asks first: a report to an ended trial would fail the job with Optuna's error
        return [TrialWatch(self.optuna_trial), *([self.pruning] if self.pruning else [])]

    def check_open(self) -> None:
        """Raise ``TrialEnded`` when the job's trial is over before the job starts (``explab.sweep.watch``)."""
        if self.optuna_trial:
            from explab.sweep.watch import check_trial_open

            check_trial_open(self.optuna_trial)

    def raise_if_pruned(self) -> None:
        if self.pruning and self.pruning.pruned_at is not None:
            import optuna

            raise optuna.TrialPruned(f"pruned after epoch {self.pruning.pruned_at} on {self.monitor}")

    def check_objective(self, metrics: dict[str, float]) -> None:
        """A trial the study cannot use (no objective, or a diverged one) must fail in MLflow too, not only in
        Optuna: both stores then say the same."""
        if not self.optuna_trial:
            return
        objectives = self.objectives()
        for objective in objectives:
            if objective not in metrics:
                needs = {"test": "; a test/ metric needs test=true", "val": "; a val/ metric needs validation"}
                raise UsageError(
                    f"the sweep optimises '{objective}', which this job did not return (it returned "
                    f"{', '.join(sorted(metrics))}){needs.get(objective.split('/', 1)[0], '')}"
                )
        for name in {*objectives, self.monitor} - {None}:
            if name in metrics and not math.isfinite(metrics[name]):
                raise FloatingPointError(f"objective {name} is {metrics[name]}")

    @contextmanager
    def study_writes(self) -> Iterator[None]:
        """Inside, a write the study's storage has no room for (a report of the pruner: a full disk, a quota)
        fails the job with one line naming the storage, instead of a traceback of Optuna's."""
        try:
            yield
        except Exception as error:
            if not self.optuna_trial or isinstance(error, ExplabError):
                raise
            reason = no_room_behind(error)
            if reason is None or not raised_in(error, OPTUNA_STORAGE_CODE):
                raise
            from explab.sweep.storage import StudyStorageError
            from explab.tracking.store import shown_url

            raise StudyStorageError(
                f"The study's storage {shown_url(str(self.optuna_trial.storage))} could not take a write "
                f"({reason}): trial {self.optuna_trial.number} stopped. Free space there (or raise your quota), "
                "then run the sweep's command again"
            ) from error

    @contextmanager
    def record_state(self, run: TrackedRun | None) -> Iterator[None]:
        """Tag the MLflow run with the Optuna state this job ends in."""
        if not self.optuna_trial or run is None:
            yield
            return
        try:
            yield
        except BaseException as error:
            run.set_tags({"optuna.trial_state": "PRUNED" if is_trial_pruned(error) else "FAIL"})
            raise
        run.set_tags({"optuna.trial_state": "COMPLETE"})
