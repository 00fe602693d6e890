"""A warning when ``trainer.accumulate_grad_batches`` asks for more batches than an epoch holds."""

from __future__ import annotations

from typing import Any

import lightning as L

from explab.callbacks.stock import StateKeyOnce
from explab.utils.logging import get_logger

log = get_logger(__name__)


class AccumulationPastTheEpoch(StateKeyOnce, L.Callback):
    """Warns, once the fit knows its epoch's length, where ``accumulate_grad_batches`` exceeds it.

    Lightning steps the optimizer at each epoch's end whatever is left to accumulate, and says nothing: with
    ``accumulate_grad_batches=8`` over 5 batches an epoch, every step sums 5 batches, and the effective batch
    size (and a learning rate scaled to it) is 5/8 of the one the config gives.
    """

    def on_train_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        asked, batches = trainer.accumulate_grad_batches, trainer.num_training_batches
        if asked > batches and trainer.is_global_zero:  # an epoch of no set length is inf: never exceeded
            log.warning(
                "trainer.accumulate_grad_batches=%d is more than an epoch's %d training batches%s: Lightning steps "
                "the optimizer at each epoch's end, so every step sums %d batches, not %d. Give %d or fewer, "
                "or a smaller data.batch_size",
                asked,
                batches,
                " per device" if trainer.world_size > 1 else "",
                batches,
                asked,
                batches,
            )
