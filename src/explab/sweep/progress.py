"""How far a study is towards ``n_trials``, read from its storage, which every worker of the study shares.

Only the trials the search itself trains count: repeats and warm starts were told values without training,
and replicates are trained after the search (``explab.sweep.search_trials``).
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from explab.sweep import search_trials


def progress(study: optuna.Study) -> tuple[int, int]:
    """(finished, running) trials of the study; a queued (WAITING) trial is not running: whichever worker
    asks next runs it."""
    trials = search_trials(study)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    return finished, sum(t.state == TrialState.RUNNING for t in trials)


def grid_exhausted(study: optuna.Study) -> bool:
    """Whether the study is a grid whose every point ran."""
    return isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study)


def study_full(study: optuna.Study, n_trials: int) -> bool:
    """Enough trials finished or running, or (a grid) every point ran, failed ones included: they would
    fail again."""
    finished, running = progress(study)
    return finished + running >= n_trials or grid_exhausted(study)


def beyond_n_trials(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether trial ``number`` is one too many: two workers may ask in the same instant, and the
    later-numbered trial beyond ``n_trials`` stands down."""
    taken = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    earlier = [t for t in search_trials(study, taken) if t.number < number]
    return len(earlier) >= n_trials
