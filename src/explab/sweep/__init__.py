"""What sweeps need: opening Optuna storages and studies, search spaces, pruning, the sweep's summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial, Trial, TrialState

# a trial whose sampled values repeat a COMPLETE trial's: told that trial's value (its number here), not trained
REPEATS_ATTR = "explab.repeats_trial"
# a trial copied from an earlier study or MLflow run before the search began (its origin here), not trained
WARM_START_ATTR = "explab.warm_start"
# a trial trained after the search with another seed (the number of the trial whose configuration it repeats)
REPLICATE_ATTR = "explab.replicate_of"


def is_repeat(trial: FrozenTrial | Trial) -> bool:
    """Whether an Optuna trial is a repeat (its value copied from an earlier trial): it trained nothing."""
    return REPEATS_ATTR in trial.user_attrs


def is_warm_start(trial: FrozenTrial | Trial) -> bool:
    """Whether an Optuna trial was copied from a warm-start source: it trained nothing in this study."""
    return WARM_START_ATTR in trial.user_attrs


def is_replicate(trial: FrozenTrial | Trial) -> bool:
    """Whether an Optuna trial trains a top configuration again with another seed, after the search."""
    return REPLICATE_ATTR in trial.user_attrs


def search_trials(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
    """The trials the search itself trained (in ``states``): repeats and warm starts, told values without
    training here, and replicates, trained after the search, left out."""
    trials = study.get_trials(deepcopy=False, states=states)
    return [t for t in trials if not (is_repeat(t) or is_warm_start(t) or is_replicate(t))]


def named_function(spec: str) -> Callable[..., Any]:
    """The function a sweeper setting names (``hydra.sweeper.check``, ``custom_search_space``), written
    ``module:function`` or ``module.function``."""
    from hydra.utils import get_method

    return get_method(spec.replace(":", "."))
