"""Lightning's ModelCheckpoint and EarlyStopping, the same in behaviour and saved state, minus their per-step cost
(and, for EarlyStopping, with the patience the config gives rather than the checkpoint's).

Lightning calls six hooks of every callback on every training step, and for each call formats the callback's
``state_key`` for its profiler, even when no profiler is on: for these two a ``repr`` of their settings.
ModelCheckpoint also decides on every step not to save when it saves only at epoch ends. Both are per-step
costs that ``bench/overhead.py`` measures. The classes keep Lightning's names, so the keys their state is
saved under in a checkpoint are unchanged and Lightning's own checkpoints resume.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping as _EarlyStopping
from lightning.pytorch.callbacks import ModelCheckpoint as _ModelCheckpoint

from explab.utils.logging import get_logger

log = get_logger(__name__)


class StateKeyOnce(L.Callback):
    """Formats ``state_key`` once: it depends only on settings fixed when the callback is made."""

    @cached_property
    def state_key(self) -> str:
        return super().state_key


class ModelCheckpoint(StateKeyOnce, _ModelCheckpoint):
    """Lightning's ModelCheckpoint; with neither ``every_n_train_steps`` nor ``train_time_interval`` set it
    skips the per-step hook, which could only decide not to save."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        if self._every_n_train_steps < 1 and self._train_time_interval is None:
            return
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)


class EarlyStopping(StateKeyOnce, _EarlyStopping):
    """Lightning's EarlyStopping, its ``state_key`` formatted once, keeping its configured ``patience`` when a
    checkpoint's state is loaded."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Warns where the fit validates other than once an epoch: ``patience`` counts validations, so with four
        an epoch (``val_check_interval=0.25``) a patience of 5 stops a run after 1.25 epochs without improvement,
        and with one every 2 epochs after 10, where the config reads as 5 epochs."""
        epochs = epochs_per_validation(trainer)
        if epochs is None or not trainer.is_global_zero:
            return
        warn_of_patience_in_validations(
            "callbacks.early_stopping.patience", self.patience, epochs, "validations, not epochs", "it stops a run"
        )

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        # a fit its time limit stopped mid-epoch validated there and saved its state after; resumed, it ends that
        # epoch without validating in this process, and Lightning's check failed the run on the missing metric.
        # Nothing new to follow then: skipped, as Lightning's ModelCheckpoint decides on the same flag
        if self.monitor not in trainer.callback_metrics and not trainer.fit_loop.epoch_loop.val_loop._has_run:
            return
        super()._run_early_stopping_check(trainer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning's restores the checkpoint's patience too: a resume with a raised patience, the way to train
        # an early-stopped run further, would stop again at the old one while its record says the new one
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience


def warn_of_patience_in_validations(setting: str, patience: int, epochs: float, counted: str, effect: str) -> None:
    """Warns where a ``patience`` counted in validations (early stopping's, a plateau scheduler's) is not that
    many epochs, the fit validating every ``epochs`` epochs: with one every 2 epochs a patience of 5 waits 10,
    where the config reads as 5. ``counted`` says what the patience counts, ``effect`` what it then does."""
    if epochs == 1 or not patience:
        return
    log.warning(
        "%s=%d counts %s, and this fit validates every %s epochs: %s after %s epochs without improvement. "
        "For %d epochs give %s=%d",
        setting,
        patience,
        counted,
        f"{epochs:.3g}",
        effect,
        f"{patience * epochs:.3g}",
        patience,
        setting,
        max(1, round(patience / epochs)),
    )


def epochs_per_validation(trainer: L.Trainer) -> float | None:
    """The epochs between two validations of the fit (0.25 for four an epoch, 2 for one every other epoch);
    None where validation is timed in seconds or an epoch has no set length."""
    batches, between = trainer.num_training_batches, trainer.val_check_batch
    if between is None or math.isinf(batches) or math.isinf(between) or not batches:
        return None
    if trainer.check_val_every_n_epoch is None:  # counted in batches across epochs
        return between / batches
    return trainer.check_val_every_n_epoch / max(1, batches // between)
