"""Where a fit stands in its training epoch, as Lightning's loop counts it: what a checkpoint written now
must carry (the data's place, the epoch's running sums) for a resumed fit to go on from the same point."""

from __future__ import annotations

from typing import cast

import lightning as L
from lightning.pytorch.loops.progress import _ProcessedTracker


def batches_trained_in_epoch(trainer: L.Trainer) -> int:
    """The training batches of the current epoch whose step is done: counted from the end of the step, so
    a checkpoint written in ``on_train_batch_end``, after a validation or at the epoch's end counts the
    batch in hand (Lightning's loop has fetched the next one already)."""
    # Lightning's tracker here has ``processed``; its annotation names the base class, which has not
    return cast(_ProcessedTracker, trainer.fit_loop.epoch_loop.batch_progress.current).processed


def written_mid_epoch(trainer: L.Trainer) -> bool:
    """Whether a checkpoint written now resumes inside the current epoch: some of its batches are left
    (a resume from one written at an epoch's end goes on with the next epoch). Batches of unknown number
    (an iterable without a length) end where the loop found the last one."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    return not progress.is_last_batch and batches_trained_in_epoch(trainer) < trainer.num_training_batches
