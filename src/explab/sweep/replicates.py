"""Winners over seeds: the search's top configurations trained again with more seeds, ranked by interval.

One trial is one draw of its seed. After the search (``n_trials`` finished), the ``top`` best distinct
configurations are trained ``replicates - 1`` more times, each with its own seed, as trials of the same study
marked with the trial they repeat. The winner is the configuration whose 95 % confidence interval of the mean
has the highest lower bound (the lowest upper bound when minimising): its mean over seeds, less what its
number of seeds leaves uncertain, not the luckiest single draw. The intervals share one standard deviation,
pooled over the configurations' seeds (``explab.comparison.intervals_of``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from explab.comparison import Interval, intervals_of
from explab.sweep import REPLICATE_ATTR, is_replicate, search_trials
from explab.sweep.study_record import RECORD_ATTR

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

SEED_ATTR = "explab.replicate_seed"  # on a replicate: the seed it trained with


def top_configurations(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The ``top`` best COMPLETE trials of the search (not replicates, repeats or warm starts), one per
    configuration, best first."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    complete = search_trials(study, (TrialState.COMPLETE,))
    maximize = study.direction == StudyDirection.MAXIMIZE
    complete.sort(key=lambda t: (-t.value if maximize else t.value, t.number))  # type: ignore[operator]
    chosen: list[FrozenTrial] = []
    for trial in complete:
        if all(trial.params != c.params for c in chosen):
            chosen.append(trial)
    return chosen[:top]


def replicate_seeds(base: int, replicates: int) -> list[int]:
    """The seeds of a configuration's replicates: the ``replicates - 1`` seeds after its trial's own."""
    return [base + i for i in range(1, replicates)]


def missing(
    study: optuna.Study, top: Sequence[FrozenTrial], seeds: Sequence[int], failed_since: datetime | None = None
) -> list[tuple[FrozenTrial, int]]:
    """(trial, seed) of each replicate not yet COMPLETE, RUNNING or queued. A failed one is tried again, but
    not one that failed in a trial started at or after ``failed_since`` (when this worker started): a seed
    that diverged diverges again, and trained over and over it would only fill the sweep's count of failures
    in a row. The next command tries it once more."""
    from optuna.trial import TrialState

    taken = {
        (t.user_attrs[REPLICATE_ATTR], t.user_attrs.get(SEED_ATTR))
        for t in study.get_trials(deepcopy=False)
        if is_replicate(t)
        and (
            t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
            or (
                t.state == TrialState.FAIL
                and failed_since is not None
                and t.datetime_start is not None
                and t.datetime_start >= failed_since
            )
        )
    }
    return [(trial, seed) for trial in top for seed in seeds if (trial.number, seed) not in taken]


@dataclass(frozen=True)
class ReplicatedConfiguration:
    """A top configuration: its search trial, its values over every seed, their interval, and the seeds of its
    replicates that failed (a diverged loss) and never completed."""

    trial: int
    params: dict[str, Any]
    values: list[float]
    interval: Interval
    failed_seeds: tuple[int, ...] = ()


def replicated(study: optuna.Study, top: Sequence[FrozenTrial]) -> list[ReplicatedConfiguration]:
    """Each configuration of ``top`` with the values of its trial and of its COMPLETE replicates, their
    interval on the deviation pooled over the configurations (``intervals_of``), and its failed seeds."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    values = []
    for trial in top:
        assert trial.value is not None  # top holds COMPLETE trials
        values.append(
            [trial.value]
            + [t.value for t in complete if t.user_attrs.get(REPLICATE_ATTR) == trial.number and t.value is not None]
        )
    # one model on one data set: its configurations share the seed noise, and a configuration's two or three
    # seeds alone measure it poorly (a tie would be an interval of zero width, and win)
    # cut to the metric's range as explab-report cuts it (an accuracy's interval ends at 1)
    metric = (study.user_attrs.get(RECORD_ATTR) or {}).get("metric")
    found = intervals_of(values, "pooled", metric=metric if isinstance(metric, str) else None)
    return [
        ReplicatedConfiguration(trial.number, dict(trial.params), v, i, _failed_seeds(trial, complete, failed))
        for trial, v, i in zip(top, values, found, strict=True)
    ]


def _failed_seeds(
    trial: FrozenTrial, complete: Sequence[FrozenTrial], failed: Sequence[FrozenTrial]
) -> tuple[int, ...]:
    """The seeds on which replicates of ``trial`` failed and none completed."""

    def seeds(trials: Sequence[FrozenTrial]) -> set[int | None]:
        return {t.user_attrs.get(SEED_ATTR) for t in trials if t.user_attrs.get(REPLICATE_ATTR) == trial.number}

    return tuple(sorted(seed for seed in seeds(failed) - seeds(complete) if seed is not None))


def winner(configurations: Sequence[ReplicatedConfiguration], maximize: bool) -> ReplicatedConfiguration:
    """The configuration with the highest interval lower bound (lowest upper bound when minimising).

    One that failed on a seed ranks after every one that completed all its seeds: its interval stands on the
    seeds that trained to their end, and says nothing of those that diverged. One with a single value has no
    interval and ranks last among its kind."""
    sign = 1.0 if maximize else -1.0

    def bound(c: ReplicatedConfiguration) -> tuple[bool, float, float]:
        edge = sign * (c.interval.low if maximize else c.interval.high)
        return (not c.failed_seeds, -math.inf if math.isnan(edge) else edge, sign * c.interval.mean)

    return max(configurations, key=bound)


def study_winner(study: optuna.Study, configurations: Sequence[ReplicatedConfiguration]) -> ReplicatedConfiguration:
    """``winner`` of ``configurations`` in the direction ``study`` optimises."""
    from optuna.study import StudyDirection

    return winner(configurations, study.direction == StudyDirection.MAXIMIZE)


def replicated_configurations(study: optuna.Study) -> list[ReplicatedConfiguration]:
    """The configurations that have replicates, each with its trial's and its replicates' values."""
    numbers = sorted({t.user_attrs[REPLICATE_ATTR] for t in study.get_trials(deepcopy=False) if is_replicate(t)})
    return replicated(study, [study.trials[n] for n in numbers])
