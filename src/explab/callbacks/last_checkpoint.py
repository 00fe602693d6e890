"""last.ckpt, the newest training state: written often enough to lose little, rarely enough to cost little."""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from explab.callbacks.stock import ModelCheckpoint


def is_final_epoch(trainer: L.Trainer) -> bool:
    """This epoch is the fit's last one: max_epochs or max_steps reached, or a callback stopped the fit."""
    max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else float("inf")
    out_of_steps = trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps
    return bool(trainer.should_stop) or trainer.current_epoch + 1 >= max_epochs or out_of_steps


class LastCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` (explab's, without its per-step cost; no monitor) written at an epoch's end once
    ``min_interval_seconds`` have passed since the last write, and always after the final epoch.

    A write every epoch would dominate short epochs (``bench/overhead.py``); an interval bounds what a
    SIGKILL can lose by time instead. Epochs longer than the interval are saved every epoch. MLflow metrics
    are written together with this checkpoint (``RunLogger``), so the store and the state that ``resume=``
    continues from always agree. Rank 0 decides for every rank.
    """

    def __init__(self, *args: Any, min_interval_seconds: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_interval_seconds = float(min_interval_seconds)
        self._last_write = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_write = time.monotonic()

    def _due(self, trainer: L.Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        due = is_final_epoch(trainer) or time.monotonic() - self._last_write >= self.min_interval_seconds
        return bool(trainer.strategy.broadcast(due, src=0))

    # Lightning saves in one of these two hooks (the same one on every rank); only that one asks ``_due``, so
    # the clock is read and broadcast once per epoch
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._should_save_on_train_epoch_end(trainer) and self._due(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_save_on_train_epoch_end(trainer) and self._due(trainer):
            super().on_validation_end(trainer, pl_module)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._last_write = time.monotonic()
