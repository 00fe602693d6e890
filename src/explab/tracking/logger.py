"""Lightning's ``MLFlowLogger``, told that someone else owns the run's lifecycle, writing in batches."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

MLFLOW_BATCH_LIMIT = 1000  # metrics per log_batch call


class RunLogger(MLFlowLogger):
    """Writes metrics into an existing run and leaves its status to ``TrackedRun``.

    The stock logger ends its run at the end of ``fit``, before ``test`` has logged anything, and marks it
    FAILED from inside Lightning; explab ends runs in one place instead.

    Lightning hands over metrics several times per epoch (learning rate at its start, validation, then
    training values at its end), and the stock logger makes each hand-over a store transaction, which short
    epochs pay for (the logging-cost line of ``bench/overhead.py``). Here values are held and written as one
    ``log_batch``:
    - right after an epoch that wrote the last-state checkpoint (a ``ModelCheckpoint`` without a monitor,
      e.g. ``LastCheckpoint``) has handed over its last values (Lightning logs the training values just after
      the checkpoint), so whatever ``resume=`` continues from, the store has every value up to it and none
      beyond: a SIGKILL loses nothing that resuming would not recompute, and resuming logs no step twice;
    - once ``flush_seconds`` have passed since the last write, only while no last-state checkpoint has been
      written (runs that keep none, and the time before the first one);
    - at the end of every fit and test, failed ones included (Lightning calls ``finalize`` then).
    """

    def __init__(self, *args: Any, flush_seconds: float = 5.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_seconds = flush_seconds
        self._pending: dict[tuple[str, int], float] = {}
        self._last_flush = time.monotonic()
        self._checkpoint_saved = False
        self._follows_checkpoints = False

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self._pending[(key, step or 0)] = value  # a value logged twice at one step: the last one counts
        timed_out = time.monotonic() - self._last_flush >= self.flush_seconds
        if self._checkpoint_saved or (timed_out and not self._follows_checkpoints):
            self.flush()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        super().after_save_checkpoint(checkpoint_callback)
        if getattr(checkpoint_callback, "monitor", None) is None:  # the state resume= continues from
            self._checkpoint_saved = self._follows_checkpoints = True

    @rank_zero_only
    def flush(self) -> None:
        """Write the held values now: one store transaction per thousand values (MLflow's batch limit)."""
        from mlflow.entities import Metric

        self._last_flush, self._checkpoint_saved = time.monotonic(), False
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for (key, step), value in pending.items()]
        for start in range(0, len(batch), MLFLOW_BATCH_LIMIT):
            self.experiment.log_batch(self.run_id, metrics=batch[start : start + MLFLOW_BATCH_LIMIT])

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.flush()
