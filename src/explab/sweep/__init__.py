"""What sweeps need: opening Optuna storages and studies, search spaces, pruning, the sweep's summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial, Trial

# a trial whose sampled values repeat a COMPLETE trial's: told that trial's value (its number here), not trained
REPEATS_ATTR = "explab.repeats_trial"
# a trial copied from an earlier study or MLflow run before the search began (its origin here), not trained
WARM_START_ATTR = "explab.warm_start"


def is_repeat(trial: FrozenTrial | Trial) -> bool:
    """Whether an Optuna trial is a repeat (its value copied from an earlier trial): it trained nothing."""
    return REPEATS_ATTR in trial.user_attrs


def is_warm_start(trial: FrozenTrial | Trial) -> bool:
    """Whether an Optuna trial was copied from a warm-start source: it trained nothing in this study."""
    return WARM_START_ATTR in trial.user_attrs
