"""last.ckpt, the newest training state: written often enough to lose little, rarely enough to cost little."""

from __future__ import annotations

import os
import time
from typing import Any

import lightning as L

from explab.callbacks.stock import ModelCheckpoint


def is_final_epoch(trainer: L.Trainer) -> bool:
    """This epoch is the fit's last one: max_epochs or max_steps reached, or a callback stopped the fit."""
    max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else float("inf")
    out_of_steps = trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps
    return bool(trainer.should_stop) or trainer.current_epoch + 1 >= max_epochs or out_of_steps


PENDING = ".pending"  # a written checkpoint whose epoch's metrics may not be in the store yet


class LastCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` (explab's, without its per-step cost; no monitor) written at an epoch's end once
    ``min_interval_seconds`` have passed since the last write, and always after the final epoch.

    A write every epoch would dominate short epochs (``bench/overhead.py``); an interval bounds what a
    SIGKILL can lose by time instead. Epochs longer than the interval are saved every epoch. Rank 0 decides
    for every rank.

    The store must never miss a step that ``last.ckpt`` says is done: resuming would not train it again.
    Lightning saves the checkpoint before it hands the epoch's training values to the loggers, so the state
    is written as ``last.ckpt.pending`` and becomes ``last.ckpt`` (one rename) only once the loggers have
    written everything logged up to it (``commit``: when the next epoch starts, when training ends, and on
    a stop signal). A kill before the rename resumes from the previous state and trains the epoch again;
    a kill between the store's write and the rename leaves values the resumed fit logs again at the same
    steps, which ``RunLogger`` does not write twice.
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

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.commit(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self.commit(trainer)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath + PENDING)
        self._last_checkpoint_saved = filepath  # what Lightning reports as saved: the name it will have
        self._last_write = time.monotonic()

    def commit(self, trainer: L.Trainer) -> None:
        """Have the loggers write what was handed over up to the pending state, then make it ``last.ckpt``;
        nothing when no state is pending."""
        if not trainer.is_global_zero or not self._last_checkpoint_saved:
            return
        pending = self._last_checkpoint_saved + PENDING
        if "://" in pending or not os.path.exists(pending):
            return
        for logger in trainer.loggers:
            write = getattr(logger, "write_up_to_checkpoint", None)  # RunLogger's; other loggers write at once
            if callable(write):
                write()
        os.replace(pending, self._last_checkpoint_saved)
