"""What a study optimises: one direction per objective, and the metric each is read from in a job's result."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from explab.comparison import better_by_name
from explab.errors import UsageError
from explab.monitor_mode import after_validation

DIRECTIONS = ("minimize", "maximize")
# the direction each metric's name says is better (val/acc_best: maximize); explab's search configs use it, so a
# search of a regression experiment minimises its error without being told
AUTO = "auto"


def reported_each_epoch(metric: str) -> bool:
    """Whether a job of explab's train has ``metric`` after each validation epoch, to report to its trial for
    pruning: the ``val/`` metrics. ``test/``, ``perf/fit_seconds`` and ``model/`` come only once the fit is
    over."""
    return after_validation(metric)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _directions_by_name(directions: tuple[str, ...], metrics: tuple[str, ...]) -> tuple[str, ...]:
    """``directions`` with each ``auto`` replaced by what its metric's name says is better."""
    if not metrics:
        raise UsageError(
            "hydra.sweeper.direction=auto reads the direction from the metric's name, and hydra.sweeper.metric "
            "names none: set the metric, or the direction (minimize or maximize)"
        )
    named = []
    for metric, direction in zip(metrics, directions, strict=False):
        better = better_by_name(metric) if direction == AUTO else direction
        if better is None:
            raise UsageError(
                f"hydra.sweeper.direction=auto cannot tell from its name whether more {metric} is better: set "
                f"its direction, hydra.sweeper.direction=maximize or minimize (a list, one per metric, for "
                f"several objectives)"
            )
        named.append(better)
    return tuple(named)


@dataclass(frozen=True)
class Objectives:
    """``directions`` has one entry per objective; ``metrics`` names the job result's key for each, or is empty
    when jobs return one number (one objective) or a sequence of numbers (one per direction)."""

    directions: tuple[str, ...]
    metrics: tuple[str, ...]

    @classmethod
    def from_settings(cls, direction: Any, metric: Any) -> Objectives:
        """From ``hydra.sweeper.direction`` and ``hydra.sweeper.metric``, each a string or a list.

        ``auto`` takes each metric's direction from its name (``better_by_name``): one ``auto`` serves a whole
        metric list, and an ``auto`` entry of a direction list serves its own metric.

        Raises:
            UsageError: an unknown direction, a metric list whose length differs from the directions', a
                direction against what a metric's name says is better (maximize val/mse_best), the slip of
                changing the metric and not the direction, which would crown the worst trial, or ``auto`` for
                a metric whose name says neither (model/parameters) or for no metric at all.
        """
        # hydra-optuna-sweeper's configs may hold its Direction enum, whose name is the direction
        directions = tuple(str(getattr(d, "name", d)) for d in _as_list(direction))
        metrics = tuple(str(m) for m in _as_list(metric))
        if directions == (AUTO,) and len(metrics) > 1:
            directions = (AUTO,) * len(metrics)
        if not directions or any(d not in (*DIRECTIONS, AUTO) for d in directions):
            raise UsageError(
                f"hydra.sweeper.direction must be minimize, maximize, auto or a list of them, got {direction!r}"
            )
        if metrics and len(metrics) != len(directions):
            raise UsageError(
                f"hydra.sweeper.direction lists {len(directions)} direction(s) and hydra.sweeper.metric "
                f"{len(metrics)} metric(s) ({', '.join(metrics)}): give one direction per metric"
            )
        if AUTO in directions:
            directions = _directions_by_name(directions, metrics)
        for position, (metric, direction) in enumerate(zip(metrics, directions, strict=False)):
            better = better_by_name(metric)
            if better is not None and better != direction:
                given = directions[0] if len(directions) == 1 else f"[{','.join(directions)}]"
                fix = (
                    f"hydra.sweeper.direction={better}"
                    if len(directions) == 1
                    else f"entry {position + 1} of hydra.sweeper.direction to {better}"
                )
                raise UsageError(
                    f"hydra.sweeper.direction={given} would {direction} {metric}, and by its name "
                    f"{'lower' if better == 'minimize' else 'higher'} is better: set {fix}"
                )
        return cls(directions, metrics)

    @property
    def several(self) -> bool:
        return len(self.directions) > 1

    @property
    def direction_setting(self) -> str | list[str]:
        """The directions as the sweep's definition records them: a string for one objective."""
        return list(self.directions) if self.several else self.directions[0]

    @property
    def metric_setting(self) -> str | list[str] | None:
        """The metrics as the sweep's definition records them: a string for one, None for none."""
        if not self.metrics:
            return None
        return list(self.metrics) if self.several else self.metrics[0]

    def names(self) -> list[str]:
        """A name per objective: its metric, or ``value``, ``value_1``, ... for numbers a job returns."""
        if self.metrics:
            return list(self.metrics)
        return ["value"] if not self.several else [f"value_{i}" for i in range(len(self.directions))]

    def values(self, returned: Any) -> list[float]:
        """The objective values in a job's result: a mapping of metrics, one number, or a number per objective.

        Raises:
            KeyError: a mapping without one of the metrics, or without ``metric`` set.
            TypeError: a result of the wrong shape.
            ValueError: a value that is NaN or infinite.
        """
        if isinstance(returned, Mapping):
            if not self.metrics:
                raise KeyError("the job returned several metrics; set hydra.sweeper.metric to choose")
            missing = [m for m in self.metrics if m not in returned]
            if missing:
                raise KeyError(f"the job returned no {', '.join(missing)}; it returned {sorted(returned)}")
            raw = [returned[m] for m in self.metrics]
        elif isinstance(returned, Sequence) and not isinstance(returned, str):
            raw = list(returned)
        else:
            raw = [returned]
        if len(raw) != len(self.directions):
            raise TypeError(
                f"the job returned {len(raw)} value(s) ({returned!r}) for {len(self.directions)} objective(s)"
            )
        values = [float(v) for v in raw]
        for name, value in zip(self.names(), values, strict=True):
            if not math.isfinite(value):
                raise ValueError(f"objective {name} is {value}")
        return values
