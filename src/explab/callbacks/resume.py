"""Tell a reopened run when its resumed fit starts training: until then a failure leaves it as it was."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning as L

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from explab.tracking import TrackedRun


class ResumedTraining(L.Callback):
    """Tells the run once Lightning has restored the checkpoint and passed the sanity check
    (``TrackedRun.training_resumed``), and records then what the resume changed
    (``explab.reproduce.record_resumed_config``): a resume that fails before this point leaves the run's record
    as it was. A resumed fit with nothing left to train tells it as the fit ends."""

    def __init__(self, run: TrackedRun, cfg: DictConfig) -> None:
        self.run = run
        self.cfg = cfg

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from explab.reproduce import record_resumed_config

        self.run.training_resumed()
        record_resumed_config(self.run, self.cfg)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a checkpoint of the fit's end (a run stopped while it tested) leaves nothing to train: Lightning
        # skips the training loop and never calls on_train_start, yet the resume has succeeded and tests next
        if not self.run.resumed_training:
            self.on_train_start(trainer, pl_module)
