"""A training job's side of a sweep: tags that link it to its study, pruning, and its final state."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

from explab.sweep.pruning import OptunaPruning


class TrialJob:
    """Built from ``cfg.optuna_trial``, which the sweeper sets on each job it launches."""

    def __init__(self, cfg: DictConfig) -> None:
        self.handoff = cfg.get("optuna_trial")
        self.monitor = cfg.get("optimized_metric")
        self.pruning = OptunaPruning(self.handoff, self.monitor) if self.handoff and self.monitor else None

    def __bool__(self) -> bool:
        return bool(self.handoff)

    def tags(self) -> dict[str, Any]:
        if not self.handoff:
            return {}
        tags = {"optuna.study_name": self.handoff.study_name, "optuna.trial_number": self.handoff.number}
        if self.handoff.get("parent_run_id"):
            tags["mlflow.parentRunId"] = self.handoff.parent_run_id
        return tags

    def run_name(self) -> str | None:
        return f"trial-{self.handoff.number}" if self.handoff else None

    def callbacks(self) -> list:
        return [self.pruning] if self.pruning else []

    def raise_if_pruned(self) -> None:
        if self.pruning and self.pruning.pruned_at is not None:
            import optuna

            raise optuna.TrialPruned(f"pruned after epoch {self.pruning.pruned_at} on {self.monitor}")

    def check_objective(self, metrics: dict[str, float]) -> None:
        """A diverged trial must fail in MLflow too, not only in Optuna."""
        if self.handoff and self.monitor in metrics and not math.isfinite(metrics[self.monitor]):
            raise FloatingPointError(f"objective {self.monitor} is {metrics[self.monitor]}")

    @contextmanager
    def record_state(self, run: Any) -> Iterator[None]:
        """Tag the MLflow run with the Optuna state this job ends in."""
        if not self.handoff or run is None:
            yield
            return
        try:
            yield
        except BaseException as error:
            run.set_tags({"optuna.trial_state": "PRUNED" if type(error).__name__ == "TrialPruned" else "FAIL"})
            raise
        run.set_tags({"optuna.trial_state": "COMPLETE"})
