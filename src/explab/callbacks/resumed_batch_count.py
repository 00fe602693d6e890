"""Lightning's count of an interrupted epoch's batches, made to agree with the batches its data has left."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from explab.data.base import TensorDataModule
from explab.errors import UsageError

# the counters of Lightning's progress trackers (lightning.pytorch.loops.progress), current epoch and whole fit
_COUNTERS = ("ready", "started", "processed", "completed")


class ResumedBatchCount(L.Callback):
    """Restates, in a checkpoint being resumed from, how many of the epoch's batches Lightning's loop has
    trained: as many as the ``TensorDataModule`` leaves out of its first pass, on this fit's ranks and in
    its batch size.

    Lightning counts an epoch's batches per rank, and ends the epoch, and validates it, when its count
    reaches the batches of a whole pass. The data resumes from the samples all ranks trained together
    (``TensorDataModule.state_dict``). A fit resumed mid-epoch on another number of ranks or with another
    batch size would otherwise count on from the old count: past the end, it never validated the epoch and
    early stopping failed the run; short of it, the epoch ended early. On the same ranks and batch size the
    two counts are the same, and nothing changes.

    Raises ``UsageError`` when ``trainer.limit_train_batches`` ends the epoch at or before the batches it has
    trained: Lightning would start its count over without validating the epoch.
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Lightning restores the data module's state before the callbacks', and the loops' after both; its
        # data connector sets the trainer's datamodule attribute, which the class does not declare
        data = getattr(trainer, "datamodule", None)
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
        if trainer.state.fn != TrainerFn.FITTING or not isinstance(data, TensorDataModule) or not progress:
            return  # a test or a prediction from a checkpoint restores no training loop
        resumed = data.batches_skipped_on_resume()
        if resumed is None:
            return
        skipped, per_pass = resumed
        epoch_batches = epoch_length(per_pass, trainer.limit_train_batches)
        if skipped >= epoch_batches:
            # Lightning would restart its count without validating the epoch; refused here, before training
            # resumes, the run keeps the status it had (TrackedRun.end)
            raise UsageError(
                f"the checkpoint stopped inside an epoch after {skipped} training batches per rank (in this fit's "
                f"batch size and ranks), and trainer.limit_train_batches={trainer.limit_train_batches} ends an epoch "
                f"after {epoch_batches}: the epoch would end before where it stopped, never validated. Give "
                f"trainer.limit_train_batches={skipped + 1} or more, or leave the override out to train the epoch "
                "to its end"
            )
        shift = skipped - progress["current"]["processed"]
        for counts in (progress["current"], progress["total"]):
            for counter in _COUNTERS:
                counts[counter] += shift


def epoch_length(batches_per_pass: int, limit: int | float) -> int:
    """The batches per rank Lightning trains in an epoch of ``batches_per_pass`` under
    ``trainer.limit_train_batches=limit``: a count caps them, a fraction takes that share (rounded down)."""
    if isinstance(limit, int):
        return min(batches_per_pass, limit)
    return int(batches_per_pass * limit)
