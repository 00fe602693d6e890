"""A trial is told once: one taken from the study is always ended, whenever Ctrl-C or SIGTERM lands, and one
that two workers held keeps the first outcome told."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import optuna
import pytest
from optuna.trial import Trial, TrialState

from explab.sweep.heartbeat import RELEASED_ATTR
from explab.sweep.storage import open_storage
from explab.sweep.telling import hold_trial, tell
from explab.utils.signals import Terminated, stop_signals_raise_terminated


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


def test_a_worker_told_the_outcome_of_a_trial_another_worker_told_first_goes_on(tmp_path: Path) -> None:
    """Two workers held one trial and both finished it (the one taken for gone had ended its job just before
    it stalled): the second to tell says so and keeps the first outcome, where Optuna raised "Cannot tell a
    COMPLETE trial" and ended the second worker's sweep."""
    study = optuna.create_study(storage=open_storage(f"journal:///{tmp_path}/optuna.journal"))
    trial = study.ask()
    held_too = optuna.trial.Trial(study, trial._trial_id)
    study.tell(held_too, 1.0)
    assert tell(study, trial, TrialState.COMPLETE, [2.0], None) == TrialState.COMPLETE
    assert study.trials[0].values == [1.0]
