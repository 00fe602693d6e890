"""Tell a reopened run when its resumed fit starts training: until then a failure leaves it as it was."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning as L

if TYPE_CHECKING:
    from explab.tracking import TrackedRun


class ResumedTraining(L.Callback):
    """Marks ``run.resumed_training`` once Lightning has restored the checkpoint and passed the sanity check."""

    def __init__(self, run: TrackedRun) -> None:
        self.run = run

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.run.resumed_training = True
