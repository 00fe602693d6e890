"""The study's pruner: built from the sweep's ``pruner`` config, recorded on the study so that a job in another
process (a SLURM job, say) prunes by the same rule, and judging a trial only against trials the study trained.

Optuna keeps no pruner in its storage: ``optuna.load_study`` without one gives a default ``MedianPruner``, so a
job that reopened its study would prune by a rule nobody configured (even under ``pruner=none``).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import TYPE_CHECKING, Any

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection

from explab.sweep import is_warm_start

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial, TrialState

PRUNER_ATTR = "explab.pruner"  # on the study: the sweep's pruner config (None: no pruning)


class TrainedTrialsPruner(BasePruner):
    """``pruner``, shown the study without its warm-started trials.

    A warm start's COMPLETE trials are the survivors of another search's pruning, so at every epoch their
    values sit above what this search's trials show; Optuna's percentile pruners compare a trial with COMPLETE
    trials only, so with those survivors in view every new trial would be judged against the earlier search's
    best few and nearly all pruned. The sampler still learns from them; the pruner's statistics (its startup
    count included) come from the trials this study trained. Hyperband and successive halving read only the
    rungs trials reached here, which warm-started trials never have, so they are unaffected either way.
    """

    def __init__(self, pruner: BasePruner) -> None:
        self.pruner = pruner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.pruner.prune(_TrainedTrials(study, self.pruner), trial)


class _TrainedTrials(optuna.Study):
    """``study`` as its own trained trials show it (what Optuna's pruners read: trials, direction, storage)."""

    def __init__(self, study: optuna.Study, pruner: BasePruner) -> None:
        super().__init__(study_name=study.study_name, storage=study._storage, sampler=study.sampler, pruner=pruner)

    def _get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        return [t for t in super()._get_trials(deepcopy, states, use_cache) if not is_warm_start(t)]


def build_pruner(config: Mapping[str, Any] | None) -> BasePruner:
    """The pruner a sweep's ``pruner`` config (``_target_`` and arguments) describes; none: ``NopPruner``."""
    if not config:
        return optuna.pruners.NopPruner()
    from hydra.utils import instantiate

    return TrainedTrialsPruner(instantiate(dict(config)))


def check_pruner(config: Mapping[str, Any] | None, direction: str) -> None:
    """The pruner ``config`` describes builds, and prunes: it is tried on three trials of a study in memory
    before any trial trains. Optuna accepts settings it cannot prune with (Hyperband with ``min_resource=0``
    or ``reduction_factor=1`` divides by zero at the first epoch), which would fail every trial.

    Raises:
        UsageError: naming the pruner and Optuna's own reason.
    """
    if not config:
        return
    from explab.errors import UsageError, first_line

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory" means nothing here
    try:
        study = optuna.create_study(direction=StudyDirection[direction.upper()], pruner=build_pruner(config))
        for value in (0.1, 0.2, 0.3):
            trial = study.ask()
            for epoch in (1, 2, 3):
                trial.report(value * epoch, epoch)
                trial.should_prune()
            study.tell(trial, value * 3)
    except Exception as error:
        cause = error.__cause__ or error  # Hydra wraps an error of the pruner's constructor in its own
        settings = ", ".join(f"{key}={value}" for key, value in config.items() if key != "_target_")
        raise UsageError(
            f"hydra.sweeper.pruner ({config.get('_target_')}: {settings}) cannot prune: {first_line(cause)}. "
            "Change its settings (hydra.sweeper.pruner.KEY=...), or choose another with hydra/sweeper/pruner=NAME"
        ) from None
    finally:
        optuna.logging.set_verbosity(verbosity)


def record_pruner(study: optuna.Study, config: Mapping[str, Any] | None) -> None:
    """Keep the sweep's pruner config on ``study``; the latest sweep command's rule is the one its jobs use."""
    recorded = dict(config) if config else None
    if study.user_attrs.get(PRUNER_ATTR, "unset") != recorded:
        study.set_user_attr(PRUNER_ATTR, recorded)


def recorded_pruner(study: optuna.Study) -> BasePruner:
    """The pruner the study's sweep configured (``NopPruner`` for a study no explab sweep recorded one on)."""
    return build_pruner(study.user_attrs.get(PRUNER_ATTR))


def pruner_name(pruner: BasePruner) -> str:
    """The configured pruner's class name (``MedianPruner``, not the wrapper's)."""
    return type(pruner.pruner if isinstance(pruner, TrainedTrialsPruner) else pruner).__name__
