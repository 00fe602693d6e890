"""Is one configuration really better than another? Confidence intervals and tests over seed repeats.

The tests are scipy's (``ttest_rel``, ``wilcoxon``, ``ttest_ind(equal_var=False)``, ``mannwhitneyu``,
``bootstrap``); this module only chooses between them, corrects their p-values for the number of comparisons
(Holm) and turns them into a verdict a reader can act on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# t: Student t on each configuration's own spread; bootstrap: percentile bootstrap of its mean; pooled: Student t
# on one spread pooled over the configurations (intervals_of)
INTERVALS = ("t", "bootstrap", "pooled")
TESTS = ("t", "wilcoxon")
# metrics where less is better, told apart by the last part of their name (val/loss, perf/fit_seconds, test/mse)
_LOWER_IS_BETTER = re.compile(r"(loss|error|mse|mae|rmse|seconds|time)(_best)?$")
# metrics that are shares of the samples, in [0, 1]
_SHARE_NAMES = "acc|accuracy|f1|precision|recall|auc|auroc"
# metrics whose name says more is better; any other name (model/parameters) says neither
_HIGHER_IS_BETTER = re.compile(rf"({_SHARE_NAMES}|r2)(_best)?$")
# two repeats are the fewest that give a spread, so the fewest a test or an interval can use
MIN_REPEATS = 2
# below this many values a percentile bootstrap of their mean holds it clearly less often than its level says
# (of two values it is their range, which holds the mean half the time); Student t keeps its level at any n
BOOTSTRAP_MIN_VALUES = 10
# metrics whose name bounds their values: shares of the samples in [0, 1], squared or absolute errors and
# durations never negative, R² at most 1 (a loss may be negative, a Gaussian likelihood's, so it is not here)
_SHARES = re.compile(rf"({_SHARE_NAMES})(_best)?$")
_NON_NEGATIVE = re.compile(r"(mse|mae|rmse|seconds)(_best)?$")
_AT_MOST_ONE = re.compile(r"r2(_best)?$")


@dataclass(frozen=True)
class Interval:
    """n, mean, sample standard deviation and a confidence interval of the mean (NaN where n < 2)."""

    n: int
    mean: float
    std: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """One configuration against the baseline on one metric.

    ``difference`` is the other's mean minus the baseline's (over the paired seeds when paired);
    ``effect_size`` is Cohen's d (d_z of the differences when paired, the pooled-deviation d for Welch);
    ``smallest_p`` is the smallest p the test could give at these n (and these ties), whatever the runs showed:
    0 for a t-test, and for a rank test over a few runs more than a usual alpha (Wilcoxon's signed-rank over
    three pairs gives no p below 0.25);
    ``p_holm`` and ``verdict`` are filled in by :func:`decide`, which sees the whole family.
    """

    test: str
    n_baseline: int
    n_other: int
    difference: float
    p: float
    effect_size: float
    smallest_p: float = 0.0
    p_holm: float = math.nan
    verdict: str = ""


def lower_is_better(metric: str) -> bool:
    """Whether less of ``metric`` is better: losses, errors, durations, and ``time_to/...`` (the seconds a
    run took to reach a threshold, named after the metric it reached)."""
    return metric.startswith("time_to/") or bool(_LOWER_IS_BETTER.search(metric.rsplit("/", 1)[-1]))


def better_by_name(metric: str) -> str | None:
    """``"minimize"`` or ``"maximize"`` where ``metric``'s name says which way is better (val/loss, test/acc),
    None where it does not (model/parameters)."""
    if lower_is_better(metric):
        return "minimize"
    return "maximize" if _HIGHER_IS_BETTER.search(metric.rsplit("/", 1)[-1]) else None


def metric_range(metric: str) -> tuple[float, float]:
    """The values ``metric`` can take, as its name tells them (``test/acc``: 0 to 1); unbounded otherwise."""
    last = metric.rsplit("/", 1)[-1]
    if _SHARES.search(last):
        return 0.0, 1.0
    if _NON_NEGATIVE.search(last) or metric.startswith("time_to/"):
        return 0.0, math.inf
    if _AT_MOST_ONE.search(last):
        return -math.inf, 1.0
    return -math.inf, math.inf


def within_range(found: Interval, metric: str) -> Interval:
    """``found`` with its interval cut to the values ``metric`` can take. A Student t interval of accuracies
    near 1 reaches past 1; the true mean lies in the range, so the cut drops only impossible values and keeps
    the interval's coverage."""
    low, high = metric_range(metric)
    if math.isnan(found.low):
        return found
    return Interval(found.n, found.mean, found.std, max(found.low, low), min(found.high, high))


def _no_spread(values: np.ndarray) -> bool:
    """Whether ``values`` are one number but for rounding (0.1 + 0.2 and 0.3; the differences of two
    configurations that move together, seed by seed). scipy then warns of "catastrophic cancellation" and
    computes from rounding noise; the answer for no spread is exact."""
    return bool(np.allclose(values, values[0], rtol=1e-9, atol=1e-12))


def interval(values: Sequence[float], method: str = "t", confidence: float = 0.95, seed: int = 0) -> Interval:
    """The mean of ``values`` with its ``confidence`` interval: Student t, or a percentile bootstrap."""
    from scipy import stats

    data = np.asarray(values, dtype=float)
    n = len(data)
    mean = float(data.mean()) if n else math.nan
    if n < MIN_REPEATS:
        return Interval(n, mean, math.nan, math.nan, math.nan)
    if _no_spread(data):  # scipy answers NaN for a spread of zero; every value agrees, so does the interval
        return Interval(n, mean, 0.0, mean, mean)
    std = float(data.std(ddof=1))
    if method == "bootstrap":
        found = stats.bootstrap(
            (data,), np.mean, confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed)
        )
        low, high = found.confidence_interval
    else:
        low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(data))
    return Interval(n, mean, std, float(low), float(high))


def intervals_of(
    groups: Sequence[Sequence[float]],
    method: str = "t",
    confidence: float = 0.95,
    seed: int = 0,
    metric: str | None = None,
) -> list[Interval]:
    """:func:`interval` of each group's values; with ``method="pooled"``, Student t intervals whose standard
    deviation is pooled over the groups. Given the ``metric`` the values are of, each interval is cut to the
    values it can take (:func:`within_range`).

    Pooling assumes the groups share one spread, as the configurations of one model on one data set share
    their seed noise. With the two or three seeds a configuration usually gets, its own deviation is mostly
    noise: two seeds that tie (common for accuracy on a few hundred images) give an interval of zero width.
    The pooled deviation takes its degrees of freedom from every group; a group's interval still narrows with
    its own n. A group of fewer than two values has no interval, as in :func:`interval`.
    """
    found = (
        [interval(values, method, confidence, seed) for values in groups]
        if method != "pooled"
        else _pooled_intervals(groups, confidence)
    )
    return found if metric is None else [within_range(i, metric) for i in found]


def _pooled_intervals(groups: Sequence[Sequence[float]], confidence: float) -> list[Interval]:
    from scipy import stats

    arrays = [np.asarray(values, dtype=float) for values in groups]
    freedom = sum(len(a) - 1 for a in arrays if len(a) >= MIN_REPEATS)
    squares = sum(float(((a - a.mean()) ** 2).sum()) for a in arrays if len(a) >= MIN_REPEATS)
    found = []
    for values in groups:
        n = len(values)
        own = interval(values)  # n, mean and the group's own deviation, reported as they are
        if n < MIN_REPEATS:
            found.append(own)
            continue
        half = float(stats.t.ppf(0.5 + confidence / 2, freedom)) * math.sqrt(squares / freedom / n)
        found.append(Interval(n, own.mean, own.std, own.mean - half, own.mean + half))
    return found


def compare(baseline: Mapping[str, float], other: Mapping[str, float], test: str = "t") -> Comparison:
    """``other`` against ``baseline``, each a mapping of seed to metric value.

    Paired by seed (paired t-test, or Wilcoxon's signed-rank test with ``test="wilcoxon"``) over the seeds
    both ran when they share at least two; otherwise Welch's t-test over all values. Fewer than two values
    on a side gives p = NaN, which :func:`decide` calls "n too small" (or "not logged", for none), as it
    does a rank test whose ``smallest_p`` is ``alpha`` or more.

    Where the t statistic has no spread to divide by (every seed moved by the same amount; or, unpaired, each
    side repeats one value), the rank test takes its place: Wilcoxon's signed-rank test, or Mann-Whitney's U
    unpaired. Test sets of a few hundred examples make such ties common, and a t-test would answer p = 0 from
    two seeds; the rank tests count only how the runs order, so two seeds that agree give p = 0.5 and six give
    0.03.
    """
    from scipy import stats

    shared = sorted(set(baseline) & set(other))
    if len(shared) >= MIN_REPEATS:
        a = np.array([baseline[s] for s in shared], dtype=float)
        b = np.array([other[s] for s in shared], dtype=float)
        differences = b - a
        constant = _no_spread(differences)
        spread = 0.0 if constant else differences.std(ddof=1)
        effect = float(differences.mean() / spread) if spread > 0 else math.copysign(math.inf, differences.mean())
        ranked = test == "wilcoxon" or constant
        smallest = 0.0
        if not differences.any():
            p = 1.0  # identical on every seed: nothing to test, and scipy would warn and answer NaN
        elif ranked:
            p = float(stats.wilcoxon(b, a).pvalue)
            # every seed moving the same way is the most a signed-rank test can see: its p is the floor
            smallest = float(stats.wilcoxon(np.abs(differences)).pvalue)
        else:
            p = float(stats.ttest_rel(b, a).pvalue)
        name = "wilcoxon" if ranked else "paired t"
        return Comparison(name, len(shared), len(shared), float(differences.mean()), p, effect, smallest)
    a = np.array(list(baseline.values()), dtype=float)
    b = np.array(list(other.values()), dtype=float)
    difference = float(b.mean() - a.mean()) if len(a) and len(b) else math.nan
    if min(len(a), len(b)) < MIN_REPEATS:  # no test runs; "none" where a side never logged the metric
        return Comparison("welch" if len(a) and len(b) else "none", len(a), len(b), difference, math.nan, math.nan)
    pooled = 0.0 if _no_spread(a) and _no_spread(b) else math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    effect = difference / pooled if pooled > 0 else math.nan
    if pooled > 0:
        return Comparison(
            "welch", len(a), len(b), difference, float(stats.ttest_ind(b, a, equal_var=False).pvalue), effect
        )
    if _no_spread(np.concatenate([a, b])):
        return Comparison("welch", len(a), len(b), difference, 1.0, effect)  # one value on both sides
    # each side repeats one value: the two sides do not overlap, the most a rank test can see, so p is its floor
    p = float(stats.mannwhitneyu(b, a, method="exact").pvalue)
    return Comparison("mann-whitney", len(a), len(b), difference, p, effect, p)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN and does not count).

    scipy offers only false-discovery-rate control (``false_discovery_control``); Holm bounds the chance of
    any false "better" or "worse" in the family, which is what a verdict column promises.
    """
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def decide(comparisons: Sequence[Comparison], alpha: float, higher_is_better: bool) -> list[Comparison]:
    """Holm-corrected p-values and a verdict for each comparison of one family (one metric).

    "n too small" where a side has fewer than two values, and where the test could not have given a p below
    ``alpha`` whatever the runs showed (a rank test over a few seeds): "indistinguishable" would read as runs
    that agree, where more seeds are what could tell them apart.
    """
    from dataclasses import replace

    adjusted = holm([c.p for c in comparisons])
    decided = []
    for comparison, p_holm in zip(comparisons, adjusted, strict=True):
        if not min(comparison.n_baseline, comparison.n_other):
            verdict = "not logged"
        elif math.isnan(p_holm) or (p_holm >= alpha and comparison.smallest_p >= alpha):
            verdict = "n too small"
        elif p_holm < alpha:
            verdict = "better" if (comparison.difference > 0) == higher_is_better else "worse"
        else:
            verdict = "indistinguishable"
        decided.append(replace(comparison, p_holm=p_holm, verdict=verdict))
    return decided
