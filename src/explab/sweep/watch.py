"""A trial's job stops when its trial is no longer RUNNING in the study.

The sweep that launched a job can end the job's trial while the job still runs elsewhere: Ctrl-C on a
login-node sweep fails the trials of its SLURM jobs, which SLURM keeps running, and jobs still queued start
later for trials that are already over. Such a job would train for nobody, and finish a run that the study
calls FAIL. So a job checks its trial before it opens a run (``check_trial_open``), and after each training
epoch (``TrialWatch``); an ended trial stops it with ``TrialEnded`` and its run ends KILLED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning as L
from omegaconf import DictConfig

from explab.errors import Stopped

if TYPE_CHECKING:
    from optuna.trial import TrialState


class TrialEnded(Stopped):
    """The job's trial was ended in its study (the sweep was stopped, or gave up on the trial); nobody waits
    for this job's result."""


def trial_state(optuna_trial: DictConfig) -> TrialState:
    """The state the study holds for the job's trial now."""
    from explab.sweep.storage import trial_from_config

    trial = trial_from_config(optuna_trial)
    return trial.study._storage.get_trial(trial._trial_id).state


def trial_ended_message(optuna_trial: DictConfig, then: str) -> str | None:
    """What stops the job when its trial is no longer RUNNING (or WAITING, about to run), or None while it
    is; ``then`` says what the job does about it."""
    from optuna.trial import TrialState

    state = trial_state(optuna_trial)
    if state in (TrialState.RUNNING, TrialState.WAITING):
        return None
    return (
        f"trial {optuna_trial.number} of study '{optuna_trial.study_name}' is already {state.name} (the sweep "
        f"that launched this job was stopped, or gave up on the trial): {then}"
    )


def check_trial_open(optuna_trial: DictConfig, then: str = "this job trains nothing for it") -> None:
    """Raise ``TrialEnded`` unless the job's trial is RUNNING (or WAITING, about to run)."""
    if (ended := trial_ended_message(optuna_trial, then)) is not None:
        raise TrialEnded(ended)


class TrialWatch(L.Callback):
    """Once an epoch rank 0 asks the study whether the job's trial is still open; every DDP rank stops
    together when it is not (the answer is broadcast, as the pruning decision is).

    It asks after validation, before the pruning callback reports to the trial (Optuna refuses a report to
    an ended trial with an error that would read as the job's own failure; ``OptunaPruning`` turns that
    refusal into the same stop when the trial ends between the two), or at the epoch's end when the job
    does not validate. It must come before ``OptunaPruning`` in the trainer's callbacks.
    """

    def __init__(self, optuna_trial: DictConfig) -> None:
        self.optuna_trial = optuna_trial
        self._asked_in_epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._ask(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ask(trainer)

    def _ask(self, trainer: L.Trainer) -> None:
        # every rank sees the same epochs and hooks, so all skip or all take part in the broadcast
        if self._asked_in_epoch == trainer.current_epoch:
            return
        self._asked_in_epoch = trainer.current_epoch
        ended: str | None = None
        if trainer.is_global_zero:
            ended = trial_ended_message(self.optuna_trial, then="this job stops")
        # raised on every rank at once, so no rank waits in a collective for one that stopped
        ended = trainer.strategy.broadcast(ended, src=0)
        if ended is not None:
            raise TrialEnded(ended)
