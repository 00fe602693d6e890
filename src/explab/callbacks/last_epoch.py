"""Validation of the last epoch when ``trainer.check_val_every_n_epoch`` skips it."""

from __future__ import annotations

from typing import Any

import lightning as L

from explab.callbacks.stock import StateKeyOnce


class ValidateTheLastEpoch(StateKeyOnce, L.Callback):
    """Validates the fit's last epoch (by ``trainer.max_epochs``) where ``check_val_every_n_epoch`` would skip it.

    Lightning validates the epochs whose number that setting divides, and no other: with
    ``check_val_every_n_epoch=2`` and ``max_epochs=3`` the third epoch trained unvalidated, so the best
    checkpoint could not be its weights and the test read the second epoch's. The last epoch validates as every
    ``check_val_every_n_epoch``-th one does.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        every, last = trainer.check_val_every_n_epoch, trainer.max_epochs
        if every and last is not None and trainer.current_epoch == last - 1 and last % every:
            # Lightning reads the setting at each batch's end; the fit ends with this epoch, so no later epoch
            # reads it
            trainer.check_val_every_n_epoch = 1
