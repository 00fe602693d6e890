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
      the checkpoint), or when ``LastCheckpoint`` asks before that state becomes ``last.ckpt`` if no value
      came after it (``write_up_to_checkpoint``): so the store has every value up to the state ``resume=``
      continues from;
    - once ``flush_seconds`` have passed since the last write, only while no last-state checkpoint has been
      written (runs that keep none, and the time before the first one);
    - at the end of every fit and test, failed ones included (Lightning calls ``finalize`` then).

    A resumed fit trains again the steps after its checkpoint, and the store can already hold some of them
    (written just before a kill): a value at a step no later than the step the run already holds for that
    metric, or that this logger wrote, is a replay and is not written again, so no step appears twice in a
    metric's history.
    """

    def __init__(self, *args: Any, flush_seconds: float = 5.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_seconds = flush_seconds
        self._pending: dict[tuple[str, int], float] = {}
        self._last_flush = time.monotonic()
        self._checkpoint_saved = False
        self._follows_checkpoints = False
        self._stored_steps: dict[str, int] | None = None  # read from the run at the first write

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
    def write_up_to_checkpoint(self) -> None:
        """Write now if values handed over before the last-state checkpoint are still held (``LastCheckpoint``
        asks before that state becomes ``last.ckpt``); values handed over since an earlier write wait."""
        if self._checkpoint_saved:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Write the held values now: one store transaction per thousand values (MLflow's batch limit)."""
        from mlflow.entities import Metric

        self._last_flush, self._checkpoint_saved = time.monotonic(), False
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        if self._stored_steps is None:
            # each metric's latest value with its step: MLflow's Run keeps the steps only in this list
            self._stored_steps = {m.key: m.step for m in self.experiment.get_run(self.run_id).data._metric_objs}
        stored = self._stored_steps
        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), now, step) for (key, step), value in pending.items() if step > stored.get(key, -1)
        ]
        for start in range(0, len(batch), MLFLOW_BATCH_LIMIT):
            self.experiment.log_batch(self.run_id, metrics=batch[start : start + MLFLOW_BATCH_LIMIT])
        # Lightning hands some values over more than once at a step (``epoch`` with the validation's values
        # and again with the training's), and a write can fall between the two hand-overs
        for metric in batch:
            stored[metric.key] = max(stored.get(metric.key, -1), metric.step)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.flush()
