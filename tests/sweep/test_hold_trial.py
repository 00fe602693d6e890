"""A trial taken from the study is always ended, whenever Ctrl-C or SIGTERM lands (in-memory studies)."""

from __future__ import annotations

import os
import signal

import optuna
import pytest
from optuna.trial import Trial, TrialState

from explab.sweep.heartbeat import RELEASED_ATTR
from explab.utils.signals import Terminated, stop_signals_raise_terminated
from hydra_plugins.explab_optuna_sweeper._impl import hold_trial


def _asked_then_stopped(study: optuna.Study) -> Trial:
    """What a scheduler's stop can do: land just after the storage created the trial, before it is returned."""
    trial = study.ask()
    os.kill(os.getpid(), signal.SIGTERM)
    trial.set_user_attr("taken", True)
    return trial


def test_sigterm_while_a_trial_is_taken_fails_that_trial_without_running_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    study = optuna.create_study()
    ran = []
    with pytest.raises(Terminated), stop_signals_raise_terminated():
        hold_trial(study, lambda: _asked_then_stopped(study), ran.append)
    [trial] = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["taken"] and ran == []


def test_sigterm_while_a_trial_runs_fails_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    study = optuna.create_study()

    def run(trial: Trial) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Terminated), stop_signals_raise_terminated():
        hold_trial(study, study.ask, run)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_nothing_to_take_runs_nothing() -> None:
    study = optuna.create_study()
    assert hold_trial(study, lambda: None, lambda trial: pytest.fail("ran without a trial")) is None
    assert study.trials == []


def test_sigterm_in_a_slurm_job_releases_the_trial_for_the_requeued_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    study = optuna.create_study()
    with pytest.raises(Terminated), stop_signals_raise_terminated():
        hold_trial(study, lambda: _asked_then_stopped(study), lambda trial: None)
    [trial] = study.trials
    assert trial.state == TrialState.RUNNING and trial.user_attrs[RELEASED_ATTR] is True
