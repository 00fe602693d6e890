"""Which way is better for a metric, when the report is not told; intervals and tests of values without spread."""

from __future__ import annotations

import math
import warnings

import pytest

from explab.comparison import compare, decide, interval, lower_is_better, within_range


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


def test_values_that_differ_only_by_rounding_are_tested_without_scipys_warning_of_precision_loss() -> None:
    """Two configurations that move together seed by seed: 0.90 - 0.95 and 0.91 - 0.96 differ in their last
    bits, and scipy warned of "catastrophic cancellation ... Results may be unreliable" in explab-report."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paired = compare({1: 0.95, 2: 0.96}, {1: 0.90, 2: 0.91})
        tied = compare({1: 0.1 + 0.2, 2: 0.3}, {3: 0.3, 4: 0.3})
        flat = interval([0.1 + 0.2, 0.3, 0.3])
    assert (paired.test, paired.p, paired.effect_size) == ("wilcoxon", 0.5, -math.inf), "the same difference"
    assert tied.p == 1.0
    assert (flat.std, flat.low, flat.high) == (0.0, flat.mean, flat.mean)


@pytest.mark.parametrize(
    ("seeds", "p", "verdict"),
    [(2, 0.5, "n too small"), (5, 0.0625, "n too small"), (6, 0.03125, "worse")],
)
def test_the_same_difference_on_every_seed_is_tested_by_ranks_not_called_certain(
    seeds: int, p: float, verdict: str
) -> None:
    """One test image in 360 more or fewer on each seed is a tie common on small test sets; a t-test divides
    by the differences' zero spread and called two seeds "worse" at p = 0. Below six seeds the rank test can
    give no p under 0.05, and its verdict says the seeds are too few rather than that the runs agree."""
    baseline = {seed: 0.9500 for seed in range(seeds)}
    other = {seed: 0.9500 - 1 / 360 for seed in range(seeds)}
    [found] = decide([compare(baseline, other)], alpha=0.05, higher_is_better=True)
    assert (found.test, found.n_baseline) == ("wilcoxon", seeds)
    assert (found.p, found.p_holm, found.verdict) == (pytest.approx(p), pytest.approx(p), verdict)
    assert found.smallest_p == pytest.approx(p), "every seed moved the same way: the most the test can see"


@pytest.mark.parametrize(("runs", "p", "verdict"), [(2, 1 / 3, "n too small"), (4, 2 / 70, "better")])
def test_unpaired_sides_that_each_repeat_one_value_are_tested_by_ranks(runs: int, p: float, verdict: str) -> None:
    baseline = {seed: 0.90 for seed in range(runs)}
    other = {seed: 0.95 for seed in range(runs, 2 * runs)}  # no seed in common: unpaired
    [found] = decide([compare(baseline, other)], alpha=0.05, higher_is_better=True)
    assert (found.test, found.n_baseline, found.n_other) == ("mann-whitney", runs, runs)
    assert (found.p, found.verdict) == (pytest.approx(p), verdict)


def test_a_side_that_never_logged_the_metric_is_not_logged_not_too_small() -> None:
    found = decide(
        [
            compare({1: 0.9, 2: 0.91}, {}),
            compare({1: 0.9, 2: 0.91}, {1: 0.93}),
            compare({1: 0.9, 2: 0.91}, {3: 0.9, 4: 0.95}),
        ],
        alpha=0.05,
        higher_is_better=True,
    )
    assert [(c.test, c.verdict) for c in found] == [
        ("none", "not logged"),
        ("welch", "n too small"),
        ("welch", "indistinguishable"),
    ]


@pytest.mark.parametrize(
    ("seeds", "verdict"),
    [(4, "n too small"), (8, "indistinguishable")],
)
def test_a_rank_test_that_could_not_reach_alpha_says_the_seeds_are_too_few(seeds: int, verdict: str) -> None:
    """Wilcoxon's signed-rank test over four pairs gives no p below 0.125, whatever the runs show: calling
    them "indistinguishable" read as runs that agree. Over eight it can, and a p above alpha means what it says."""
    baseline = {seed: 0.90 for seed in range(seeds)}
    other = {seed: 0.90 + (0.01 * (seed + 1) if seed % 4 else -0.035 - 0.001 * seed) for seed in range(seeds)}
    [ranked] = decide([compare(baseline, other, test="wilcoxon")], alpha=0.05, higher_is_better=True)
    assert ranked.smallest_p == pytest.approx(2 / 2**seeds)
    assert ranked.p > 0.05 and ranked.verdict == verdict
    [paired_t] = decide([compare(baseline, other, test="t")], alpha=0.05, higher_is_better=True)
    assert paired_t.smallest_p == 0.0 and paired_t.verdict != "n too small"
