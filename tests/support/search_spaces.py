"""``hydra.sweeper.custom_search_space`` functions for the sweep tests: define-by-run spaces that rule draws out
or raise, as a researcher's own may."""

from __future__ import annotations

from typing import Any

import optuna


def rules_out_odd_trials(cfg: Any, trial: optuna.Trial) -> None:
    """Suggests the dense layer's width and rules out every odd trial's draw, as a space rules out
    combinations it cannot build."""
    trial.suggest_categorical("model.backbone.dropout", [0.1, 0.2])
    if trial.number % 2:
        raise optuna.TrialPruned("this combination cannot be built")


def fails_or_rules_out(cfg: Any, trial: optuna.Trial) -> None:
    """Fails even trials and rules odd ones out: failures never in a row, and no trial completes."""
    if trial.number % 2:
        raise optuna.TrialPruned("nothing can be built")
    raise ValueError("a bug in the search space")


def fails_in_trial_1(cfg: Any, trial: optuna.Trial) -> None:
    """A bug that shows for some draws only."""
    if trial.number == 1:
        raise ValueError("a bug in the search space")
