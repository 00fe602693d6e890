"""Wall time per training epoch, logged beside the metrics so the MLflow UI can compare speed too."""

from __future__ import annotations

import time

import lightning as L


class EpochTimer(L.Callback):
    """Logs ``perf/epoch_seconds`` (this epoch) and ``perf/mean_epoch_seconds`` (all epochs so far)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        pl_module.log("perf/epoch_seconds", self.seconds[-1])
        pl_module.log("perf/mean_epoch_seconds", sum(self.seconds) / len(self.seconds))
