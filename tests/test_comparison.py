"""Which way is better for a metric, when the report is not told."""

from __future__ import annotations

import pytest

from explab.comparison import lower_is_better


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
