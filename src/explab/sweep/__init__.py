"""What sweeps need: opening Optuna storages and studies, search spaces, pruning, the sweep's summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial, Trial

# a trial whose sampled values repeat a COMPLETE trial's: told that trial's value (its number here), not trained
REPEATS_ATTR = "explab.repeats_trial"


def is_repeat(trial: FrozenTrial | Trial) -> bool:
    """Whether an Optuna trial is a repeat (its value copied from an earlier trial): it trained nothing."""
    return REPEATS_ATTR in trial.user_attrs
