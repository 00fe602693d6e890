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
    as it was."""

    def __init__(self, run: TrackedRun, cfg: DictConfig) -> None:
        self.run = run
        self.cfg = cfg

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from explab.reproduce import record_resumed_config

        self.run.training_resumed()
        record_resumed_config(self.run, self.cfg)
