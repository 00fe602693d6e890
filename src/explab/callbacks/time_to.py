"""Seconds from the start of training until a metric first reaches a threshold: ``time_to/val/acc_0.95``.

"How long until 99 %?" compares recipes by what a researcher waits for, which final accuracy does not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L

from explab.comparison import lower_is_better


class TimeToThreshold(L.Callback):
    """Logs ``time_to/<metric>_<threshold>`` once, at the end of the first epoch where the metric reaches it.

    Reaching means at least the threshold, or at most it for metrics where less is better (loss, error,
    seconds; see :func:`explab.comparison.lower_is_better`). The clock counts training time only across a
    resume: the seconds trained before it travel in the checkpoint, with the thresholds already reached.

    Args:
        thresholds: metric name -> the thresholds to time, e.g. ``{"val/acc": [0.95, 0.99]}``, or one threshold
            (``{"val/acc": 0.95}``), as the config check takes it.
    """

    def __init__(self, thresholds: Mapping[str, Sequence[float] | float]) -> None:
        self.thresholds = {
            metric: sorted(float(t) for t in (values if isinstance(values, Sequence) else [values]))
            for metric, values in thresholds.items()
        }
        self.reached: set[str] = set()
        self.trained_before = 0.0
        self._start = math.nan

    @staticmethod
    def key(metric: str, threshold: float) -> str:
        return f"time_to/{metric}_{threshold:g}"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning runs an epoch's validation before this hook: its ``val/`` metrics are here too."""
        elapsed = self.trained_before + time.perf_counter() - self._start
        for metric, thresholds in self.thresholds.items():
            value = trainer.callback_metrics.get(metric)
            if value is None:
                continue
            for threshold in thresholds:
                key = self.key(metric, threshold)
                hit = float(value) <= threshold if lower_is_better(metric) else float(value) >= threshold
                if hit and key not in self.reached:
                    self.reached.add(key)
                    pl_module.log(key, elapsed, rank_zero_only=True)

    def state_dict(self) -> dict[str, Any]:
        trained = self.trained_before + (time.perf_counter() - self._start if not math.isnan(self._start) else 0.0)
        return {"reached": sorted(self.reached), "trained_seconds": trained}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reached = set(state_dict.get("reached", []))
        self.trained_before = float(state_dict.get("trained_seconds", 0.0))
