"""Which way is better for a metric, when the report is not told."""

from __future__ import annotations

import pytest

from explab.comparison import interval, lower_is_better, within_range


@pytest.mark.parametrize(
    ("metric", "lower"),
    [
        ("val/loss", True),
        ("val/mse_best", True),
        ("perf/fit_seconds", True),
        ("time_to/val/acc_0.95", True),  # seconds until the accuracy first reached 0.95
        ("val/acc_best", False),
        ("test/r2", False),
    ],
)
def test_lower_is_better_follows_what_the_metric_measures(metric: str, lower: bool) -> None:
    assert lower_is_better(metric) is lower


@pytest.mark.parametrize(
    ("metric", "values", "bounds"),
    [
        ("test/acc", [0.99, 1.0, 0.98], (None, 1.0)),  # Student t reaches past 1
        ("val/mse_best", [0.01, 0.5, 0.02], (0.0, None)),
        ("test/r2", [0.99, 1.0, 0.9], (None, 1.0)),
        ("val/loss", [0.01, 0.5, 0.02], (None, None)),  # a loss may be negative: left as it is
    ],
)
def test_an_interval_is_cut_to_the_values_its_metric_can_take(metric: str, values: list[float], bounds) -> None:
    raw = interval(values)
    cut = within_range(raw, metric)
    low, high = bounds
    assert (cut.n, cut.mean, cut.std) == (raw.n, raw.mean, raw.std)
    assert cut.low == (low if low is not None else raw.low) and cut.high == (high if high is not None else raw.high)
    assert (low is None or raw.low < low) and (high is None or raw.high > high), "the raw interval reaches past"
