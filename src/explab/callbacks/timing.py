"""Wall time per training epoch, logged beside the metrics so the MLflow UI can compare speed too."""

from __future__ import annotations

import time

import lightning as L


class EpochTimer(L.Callback):
    """Logs ``perf/epoch_seconds``: training batches and validation of this epoch (the MLflow UI charts it).

    The whole fit's wall time, checkpoints and logging included, is ``perf/fit_seconds`` (logged by train).
    """

    def __init__(self) -> None:
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("perf/epoch_seconds", time.perf_counter() - self._start)
