"""Stop a diverged run loudly instead of training on NaN for hours."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from explab.errors import ExplabError


class NonFiniteLossError(ExplabError, FloatingPointError):
    """The training loss became NaN or infinite: a setting to change (its message says which), not a bug, so
    the command prints the message without a traceback."""


class NonFiniteLossGuard(L.Callback):
    """Checks the training loss every ``check_every_n_steps`` steps and on the last step of each epoch.

    Checking every step would force a host sync per step; every N steps costs nothing measurable and still
    stops a diverged run within N steps.
    """

    def __init__(self, check_every_n_steps: int = 20) -> None:
        self.check_every_n_steps = max(1, check_every_n_steps)

    def _fail(self, trainer: L.Trainer, value: float) -> None:
        raise NonFiniteLossError(
            f"training loss became {value} at epoch {trainer.current_epoch}, step {trainer.global_step}. "
            "Lower the learning rate (e.g. optimizer.lr=1e-4), clip gradients "
            "(trainer.gradient_clip_val=1.0), or check the inputs for NaN."
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        last = batch_idx + 1 >= trainer.num_training_batches
        if batch_idx % self.check_every_n_steps and not last:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            self._fail(trainer, float(loss.detach().float().mean()))
