"""Lightning's ModelCheckpoint and EarlyStopping, the same in behaviour and saved state, minus their per-step cost
(and, for EarlyStopping, with the patience the config gives rather than the checkpoint's).

Lightning calls six hooks of every callback on every training step, and for each call formats the callback's
``state_key`` for its profiler, even when no profiler is on: for these two a ``repr`` of their settings.
ModelCheckpoint also decides on every step not to save when it saves only at epoch ends. Both are per-step
costs that ``bench/overhead.py`` measures. The classes keep Lightning's names, so the keys their state is
saved under in a checkpoint are unchanged and Lightning's own checkpoints resume.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping as _EarlyStopping
from lightning.pytorch.callbacks import ModelCheckpoint as _ModelCheckpoint


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

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning's restores the checkpoint's patience too: a resume with a raised patience, the way to train
        # an early-stopped run further, would stop again at the old one while its record says the new one
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience
