"""Report a job's validation metric to its Optuna trial each epoch, and stop the job when it is pruned."""

from __future__ import annotations

import math
from typing import Any

import lightning as L


class OptunaPruning(L.Callback):
    """Rank 0 reports and asks the pruner; the decision is broadcast so every DDP rank stops together.

    Only rank 0 touches the storage, so any storage works under DDP (a journal file included).
    """

    def __init__(self, handoff: Any, monitor: str) -> None:
        self.handoff = handoff
        self.monitor = monitor
        self._trial = None
        self.pruned_at: int | None = None

    def _trial_handle(self):
        if self._trial is None:
            from explab.sweep.storage import trial_from_handoff

            self._trial = trial_from_handoff(self.handoff)
        return self._trial

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                raise KeyError(
                    f"pruning follows '{self.monitor}', which this model does not log; "
                    f"logged: {sorted(trainer.callback_metrics)}"
                )
            value = float(value)
            trial = self._trial_handle()
            if math.isfinite(value):
                trial.report(value, step=trainer.current_epoch)
                prune = trial.should_prune()
        prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True
