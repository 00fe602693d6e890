"""Several objectives: the Pareto front of a study, and the hypervolume it covers.

The hypervolume is the area (volume, for three objectives) between the front and a reference point: it grows
as the front improves, so one number tracks a search of several objectives. It means something only against
a fixed reference point, so the point a study uses is kept on the study: given, or taken once from its first
finished trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from explab.sweep import REPEATS_ATTR, is_repeat

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

REFERENCE_ATTR = "explab.reference_point"
MARGIN = 0.1  # the default reference point lies this share of each objective's range beyond its worst value


def _signs(study: optuna.Study) -> np.ndarray:
    """+1 for an objective minimised, -1 for one maximised: values times signs are losses."""
    from optuna.study import StudyDirection

    return np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions])


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The COMPLETE trials that trained (repeats are told an earlier trial's values), in the order they ran."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not is_repeat(t)]


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The trials no other trial beats on every objective (ties kept), each one that trained, best first by the
    first objective: along the front, so that the trade-off reads in order (the most accurate, then ever
    cheaper ones)."""
    numbers = {t.user_attrs.get(REPEATS_ATTR, t.number) for t in study.best_trials}
    signs = _signs(study)
    return sorted((study.trials[n] for n in numbers), key=lambda t: ([*(signs * np.array(t.values))], t.number))


def reference_point(study: optuna.Study, given: Sequence[float] | None = None) -> list[float] | None:
    """The study's reference point: ``given``, else the one kept on the study, else one made now from the
    COMPLETE trials (each objective's worst value, a tenth of its range further) and kept; None before any."""
    if given is not None:
        return [float(v) for v in given]
    kept = study.user_attrs.get(REFERENCE_ATTR)
    if kept is not None:
        return [float(v) for v in kept]
    trials = complete_trials(study)
    if not trials:
        return None
    signs = _signs(study)
    losses = np.array([t.values for t in trials]) * signs
    worst, best = losses.max(axis=0), losses.min(axis=0)
    # a flat objective (one trial, or all equal) still needs a point strictly beyond it
    spread = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    point = ((worst + MARGIN * spread) * signs).tolist()
    study.set_user_attr(REFERENCE_ATTR, point)
    return point


def hypervolume(values: Sequence[Sequence[float]], study: optuna.Study, reference: Sequence[float]) -> float:
    """The hypervolume of ``values`` (a row per trial, in the study's directions) against ``reference``;
    points that do not beat the reference on every objective add nothing."""
    from optuna._hypervolume import compute_hypervolume

    signs = _signs(study)
    limit = np.asarray(reference, dtype=float) * signs
    losses = np.asarray(values, dtype=float).reshape(-1, len(signs)) * signs
    inside = losses[(losses <= limit).all(axis=1)]
    return float(compute_hypervolume(inside, limit)) if len(inside) else 0.0


def hypervolume_history(study: optuna.Study, reference: Sequence[float]) -> list[float]:
    """The hypervolume after each COMPLETE trial that trained, in the order they ran."""
    trials = complete_trials(study)
    return [hypervolume([t.values for t in trials[: i + 1]], study, reference) for i in range(len(trials))]
