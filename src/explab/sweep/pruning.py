"""Report a job's validation metric to its Optuna trial each epoch, and stop the job when it is pruned."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import lightning as L
from omegaconf import DictConfig

from explab.sweep.watch import TrialEnded, trial_ended_message

if TYPE_CHECKING:
    import optuna


class OptunaPruning(L.Callback):
    """Rank 0 reports and asks the pruner (single-objective studies only); the decision is broadcast so every
    DDP rank stops together.

    Only rank 0 touches the storage, so any storage works under DDP (a journal file included).

    Args:
        optuna_trial: the job's ``cfg.optuna_trial`` node (study_name, storage, number).
        monitor: the metric reported after each validation (at ``report_step``).
    """

    def __init__(self, optuna_trial: DictConfig, monitor: str) -> None:
        self.optuna_trial = optuna_trial
        self.monitor = monitor
        self._trial: optuna.Trial | None = None
        self.pruned_at: int | None = None

    def _trial_handle(self) -> optuna.Trial:
        if self._trial is None:
            from explab.sweep.storage import trial_from_config

            self._trial = trial_from_config(self.optuna_trial)
        return self._trial

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune, ended = False, None
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                raise KeyError(
                    f"pruning follows '{self.monitor}', which this model does not log; "
                    f"logged: {sorted(trainer.callback_metrics)}"
                )
            from optuna.exceptions import UpdateFinishedTrialError

            trial = self._trial_handle()
            # a study of several objectives has no pruner (the sweeper refuses one) and Optuna refuses reports
            if math.isfinite(float(value)) and len(trial.study.directions) == 1:
                try:
                    trial.report(float(value), step=report_step(trainer))
                    # after the last epoch nothing is left to save: a pruned trial would throw away a complete
                    # result, which the sampler learns more from than from a pruned one
                    prune = not last_epoch(trainer) and trial.should_prune()
                except UpdateFinishedTrialError as error:
                    # the sweep ended the trial after TrialWatch found it open this epoch: the same clean stop
                    ended = trial_ended_message(self.optuna_trial, then="this job stops") or str(error)
        # raised on every rank at once, so no rank waits in a collective for one that stopped
        prune, ended = trainer.strategy.broadcast((prune, ended), src=0)
        if ended is not None:
            raise TrialEnded(ended)
        if prune:
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True


def report_step(trainer: L.Trainer) -> int:
    """The step a validation's value is reported to the trial at: its epoch when the fit validates at most once
    an epoch, so trials of any batch size are compared epoch by epoch; the optimizer step when it validates
    within epochs (``trainer.val_check_interval=0.25``, or every N batches), where each report at its epoch
    would repeat a step and Optuna keeps only the first (a one-epoch fit on a large data set: one report)."""
    interval = trainer.val_check_interval
    within_epochs = isinstance(interval, int) or float(interval) < 1.0
    return trainer.global_step if within_epochs else trainer.current_epoch


def last_epoch(trainer: L.Trainer) -> bool:
    """Whether the epoch that just ended is the fit's last by ``max_epochs`` or ``max_steps``."""
    if trainer.max_epochs is not None and trainer.max_epochs >= 0 and trainer.current_epoch >= trainer.max_epochs - 1:
        return True
    return trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
