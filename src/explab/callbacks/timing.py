"""Wall time and throughput per training epoch, logged beside the metrics so the MLflow UI compares speed too."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class EpochTimer(L.Callback):
    """Logs ``perf/epoch_seconds`` (training batches and validation of this epoch) and
    ``perf/samples_per_second`` (training samples of all ranks over the time of the training batches); under
    DDP, the slowest rank's.

    The whole fit's wall time, checkpoints and logging included, is ``perf/fit_seconds`` (logged by train).
    """

    def __init__(self) -> None:
        self._start = 0.0
        self._last_batch_end = 0.0
        self._samples = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last_batch_end = time.perf_counter()
        self._samples = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._samples += len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch)
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # under DDP the job's epoch lasts as long as its slowest rank's, and it trains at that rank's pace
        pl_module.log("perf/epoch_seconds", time.perf_counter() - self._start, sync_dist=True, reduce_fx="max")
        training = self._last_batch_end - self._start
        if self._samples and training > 0:  # the same on every rank: each trains an equal shard (TensorBatches)
            rate = self._samples * trainer.world_size / training
            pl_module.log("perf/samples_per_second", rate, sync_dist=True, reduce_fx="min")
