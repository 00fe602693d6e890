"""Validation of the last epoch's end when ``trainer.check_val_every_n_epoch`` skips it, or when validation runs
every ``val_check_interval`` batches across epochs and the fit ends between two of them."""

from __future__ import annotations

from typing import Any

import lightning as L

from explab.callbacks.stock import StateKeyOnce


class ValidateTheLastEpoch(StateKeyOnce, L.Callback):
    """Validates the end of the fit's last epoch (by ``trainer.max_epochs``) where Lightning would not.

    Lightning validates the epochs whose number ``check_val_every_n_epoch`` divides, and no other: with
    ``check_val_every_n_epoch=2`` and ``max_epochs=3`` the third epoch trained unvalidated, so the best
    checkpoint could not be its weights and the test read the second epoch's. The last epoch validates as every
    ``check_val_every_n_epoch``-th one does. With ``check_val_every_n_epoch=null`` Lightning validates every
    ``val_check_interval`` batches counted across epochs, and the batches after the last such check went
    unvalidated (30 of a digits run's 40 with an interval of 30); the fit is asked to stop at its last batch,
    so Lightning validates there.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        every, last = trainer.check_val_every_n_epoch, trainer.max_epochs
        if every and last is not None and trainer.current_epoch == last - 1 and last % every:
            # Lightning reads the setting at each batch's end; the fit ends with this epoch, so no later epoch
            # reads it
            trainer.check_val_every_n_epoch = 1

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.check_val_every_n_epoch is not None or trainer.current_epoch != (trainer.max_epochs or 0) - 1:
            return
        loop = trainer.fit_loop.epoch_loop
        every = trainer.val_check_batch
        # a stop asked at the last batch is validated there; one that falls on a check is validated already
        if loop.batch_progress.is_last_batch and isinstance(every, int) and (loop.total_batch_idx + 1) % every:
            trainer.should_stop = True
