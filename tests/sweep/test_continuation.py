"""A trial cut off by a killed worker continues under its own number, in its own MLflow run, from its own
checkpoint: explab's real digits sweeps in subprocesses, SIGKILLed for real."""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from explab.sweep.continuation import ATTEMPTS_ATTR, RUN_ATTR, outcome_of_ended_trial
from explab.sweep.heartbeat import (
    CUT_OFFS_ATTR,
    HEARTBEAT_ATTR,
    MAX_CUT_OFFS,
    claim_cut_off_trial,
    mark_as_mine,
    worker_gone,
    worker_of,
)
from explab.sweep.storage import open_storage
from explab.sweep.telling import ERROR_ATTR
from explab.tracking.orphans import process_alive
from explab.tracking.store import open_client
from tests.conftest import BIN, root_env, runs_in, tracking_uri_for
from tests.sweep.test_sweeper import load, load_once_written, sweep_plain_app

EPOCHS = 4


def test_a_trial_nobody_marked_counts_as_cut_off_once_a_beat_has_passed(tmp_path: Path) -> None:
    study = optuna.create_study(storage=open_storage(f"journal:///{tmp_path}/optuna.journal"))
    study.ask()  # a worker asked for it and was killed before it marked the trial as its own
    [frozen] = study.trials
    assert not worker_gone(frozen, seconds=5.0), "a trial asked a moment ago is about to be marked"
    time.sleep(0.6)
    assert worker_gone(frozen, seconds=0.5)


def test_a_trial_whose_late_beats_keep_coming_is_left_to_its_worker_and_its_watch_is_said_once(
    tmp_path: Path, caplog
) -> None:
    """A worker on a host whose clock runs behind: its beats read old here, so each look at the study watches
    its trial again; the sweep says so once, not at every look."""
    study = optuna.create_study(storage=open_storage(f"journal:///{tmp_path}/optuna.journal"))
    trial = study.ask()
    mark_as_mine(trial, "node-a:4242")
    trial.set_user_attr(HEARTBEAT_ATTR, time.time() - 100)
    stop = threading.Event()

    def beat_behind() -> None:  # node-a's beats, written by a clock 100 s behind this one
        while not stop.wait(0.05):
            trial.set_user_attr(HEARTBEAT_ATTR, time.time() - 100)

    beating = threading.Thread(target=beat_behind)
    beating.start()
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                assert claim_cut_off_trial(study, "node-b:1", seconds=0.5) is None, "a trial that beats has a worker"
    finally:
        stop.set()
        beating.join()
    assert caplog.text.count("trial 0's worker node-a:4242 last beat") == 1, caplog.text
    assert caplog.text.count("looked cut off, but its worker node-a:4242 is still beating") == 3, caplog.text


def test_a_sweep_finishes_a_trial_its_killed_worker_asked_for_but_never_marked(tmp_path: Path) -> None:
    """The study looks full (one trial of one RUNNING), but nobody holds that trial and it has no parameter
    drawn: the command waits a beat, claims it, draws its parameters and runs it."""
    storage = open_storage(f"journal:///{tmp_path}/optuna.journal")
    optuna.create_study(study_name="plain", storage=storage, direction="minimize").ask()
    done = sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=1", "hydra.sweeper.heartbeat_seconds=1")
    assert done.returncode == 0, done.stderr[-3000:]
    [trial] = load(tmp_path, "plain").trials
    assert trial.state == TrialState.COMPLETE and set(trial.params) == {"x"}, trial
    said = done.stdout + done.stderr
    assert re.search(
        r"trial 0 was asked \d+ s ago and no worker has marked it as its own: .+ Watching it 2 s more", said
    )
    assert "trial 0 was cut off" in said


@pytest.mark.parametrize("state", ["COMPLETE", "PRUNED", None])
def test_a_trial_whose_run_ended_before_the_tell_is_not_trained_again(compose_cfg, store: Path, state) -> None:
    """The worker was cut off after its trial's run ended and before the sweeper told Optuna: the relaunched
    job returns the run's metrics (or is pruned again) and trains nothing; a run that had not ended resumes."""
    client = open_client(tracking_uri_for(store))
    run = client.create_run(client.create_experiment("digits_cnn"))
    client.log_metric(run.info.run_id, "val/acc_best", 0.95)
    if state is not None:
        client.set_tag(run.info.run_id, "optuna.trial_state", state)
        client.set_terminated(run.info.run_id, "FINISHED" if state == "COMPLETE" else "KILLED")
    url = f"journal:///{store}/optuna.journal"
    trial = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize").ask()
    trial.set_user_attr(RUN_ATTR, run.info.run_id)
    cfg = compose_cfg(
        "++optuna_trial.study_name=s", f"++optuna_trial.number={trial.number}", f"++optuna_trial.storage='{url}'"
    )
    if state == "PRUNED":
        with pytest.raises(optuna.TrialPruned, match=f"trial {trial.number}'s run {run.info.run_id} was pruned"):
            outcome_of_ended_trial(cfg)
    elif state == "COMPLETE":
        assert outcome_of_ended_trial(cfg) == {"val/acc_best": 0.95}
    else:
        assert outcome_of_ended_trial(cfg) is None, "a run cut off while RUNNING is continued, not taken as done"


def sweep_command(tmp_path: Path, n_trials: int, *args: str) -> list[str]:
    """A digits sweep writing last.ckpt every epoch, without pruning (so every trial trains ``EPOCHS``), each
    finished epoch counted in ``epochs.txt``."""
    return [
        str(BIN / "explab-train"),
        "-m",
        "hparams_search=digits_optuna",
        "hydra/sweeper/pruner=none",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.storage=journal:///{tmp_path}/optuna.journal",
        "hydra.sweeper.study_name=cut",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs",
        f"trainer.max_epochs={EPOCHS}",
        "callbacks.last_checkpoint.min_interval_seconds=0",
        "+callbacks.count._target_=tests.support.callbacks.CountEpochs",
        f"+callbacks.count.path={tmp_path}/epochs.txt",
        "+callbacks.count.trial=${oc.select:optuna_trial.number,-1}",
        *args,
    ]


def start(command: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(command, cwd=cwd, env=root_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def study_of(tmp_path: Path) -> optuna.Study | None:
    return load_once_written(tmp_path, "cut")


def running_trial_with_epochs(tmp_path: Path, completed: int = 0, timeout: float = 240) -> optuna.trial.FrozenTrial:
    """A RUNNING trial that has finished at least one epoch and has a last.ckpt to continue from (an epoch is
    counted before its checkpoint is written, and that becomes last.ckpt only once the store has the epoch),
    once at least ``completed`` trials are COMPLETE."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        study = study_of(tmp_path)
        counted = Counter(line.split()[0] for line in epoch_lines(tmp_path))
        if study is None or len(study.get_trials(states=(TrialState.COMPLETE,))) < completed:
            time.sleep(0.2)
            continue
        for trial in study.get_trials(states=(TrialState.RUNNING,)):
            checkpointed = any(tmp_path.glob(f"**/{trial.number}/checkpoints/last.ckpt"))
            pid = worker_pid(trial)
            if 1 <= counted[str(trial.number)] < EPOCHS and checkpointed and pid and process_alive(pid):
                return trial
        time.sleep(0.2)
    study = study_of(tmp_path)
    states = Counter(t.state.name for t in study.trials) if study is not None else "no study"
    counted = Counter(line.split()[0] for line in epoch_lines(tmp_path))
    raise TimeoutError(f"no trial in the middle of its epochs: trials {states}, epochs per trial {dict(counted)}")


def worker_pid(trial: optuna.trial.FrozenTrial) -> int | None:
    """The pid of the worker that marked ``trial``; None before one has (never 0: that signals our own group)."""
    pid = worker_of(trial)[1]
    return int(pid) if pid.isdigit() else None


def epoch_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "epochs.txt"
    return path.read_text().splitlines() if path.exists() else []


def check_sweep_whole(tmp_path: Path, n_trials: int) -> list:
    """Exactly ``n_trials`` finished, none failed or running; one active child run per trial, FINISHED, with
    each epoch once in its history. Returns the child runs."""
    study = study_of(tmp_path)
    assert study is not None
    states = Counter(t.state for t in study.trials)
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == n_trials, states
    failed = {t.number: t.user_attrs.get("explab.error") for t in study.trials if t.state == TrialState.FAIL}
    assert states[TrialState.FAIL] == 0 and states[TrialState.RUNNING] == 0, (states, failed)
    children = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
    by_trial = Counter(r.data.tags["optuna.trial_number"] for r in children)
    assert sorted(by_trial) == sorted(str(n) for n in range(n_trials)) and set(by_trial.values()) == {1}, by_trial
    client = open_client(tracking_uri_for(tmp_path / "mlruns"))
    for run in children:
        assert run.info.status == "FINISHED", run.data.tags["optuna.trial_number"]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
        assert len(steps) == EPOCHS and len(set(steps)) == EPOCHS, (run.data.tags["optuna.trial_number"], steps)
    for trial in study.trials:
        assert trial.user_attrs[RUN_ATTR] in {r.info.run_id for r in children}, "the trial names its one run"
    return children


@pytest.mark.slow
@pytest.mark.chaos
def test_a_killed_workers_trial_is_continued_by_the_restarted_command(tmp_path: Path) -> None:
    command = sweep_command(tmp_path, 2)
    first = start(command, tmp_path)
    cut = running_trial_with_epochs(tmp_path)
    first.send_signal(signal.SIGKILL)  # the worker and the trial in its process, as a lost machine would
    first.communicate(timeout=30)
    storage = f"journal:///{tmp_path}/optuna.journal"
    said = subprocess.run(
        [str(BIN / "explab-sweep"), "status", "cut", "--storage", storage],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    host, pid = worker_of(cut)
    assert f"trial {cut.number} cut off: its worker {host}:{pid} is gone (last heartbeat" in said, said
    assert "the next free worker, or the sweep's command run again, continues it" in said, said
    assert " running on " not in said, "nothing trains it"

    again = subprocess.run(command, cwd=tmp_path, env=root_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert f"trial {cut.number} was cut off" in log, log[-4000:]
    assert f"trial {cut.number} continues its MLflow run" in log, log[-4000:]
    children = check_sweep_whole(tmp_path, 2)
    trial = study_of(tmp_path).trials[cut.number]  # type: ignore[union-attr]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs[ATTEMPTS_ATTR] == 1, "resumed, not restarted"
    continued = next(r for r in children if r.info.run_id == trial.user_attrs[RUN_ATTR])
    assert "explab.resumed_with" not in continued.data.tags, "a continued trial trains its own settings on"
    epochs = Counter(line.split()[0] for line in epoch_lines(tmp_path))
    assert epochs[str(cut.number)] <= EPOCHS + 1, "at most the epoch in flight is trained twice"


def sweep_with_a_trial_that_kills_its_workers(
    tmp_path: Path, n_trials: int, doomed: int
) -> subprocess.CompletedProcess[str]:
    """A two-worker digits sweep whose trial ``doomed`` SIGKILLs its process at every attempt, run to its end."""
    command = sweep_command(
        tmp_path, n_trials, "hydra.sweeper.n_jobs=2", f"hydra.sweep.dir={tmp_path}/multirun",
        "+callbacks.die._target_=tests.support.callbacks.KillInTrial",
        "+callbacks.die.trial=${oc.select:optuna_trial.number,-1}", f"+callbacks.die.doomed={doomed}",
    )  # fmt: skip
    return subprocess.run(command, cwd=tmp_path, env=root_env(), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.chaos
def test_a_trial_that_kills_every_worker_it_runs_on_is_failed_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """A trial that runs its host out of memory has every worker it runs on killed by the kernel. Each next
    free worker took it up again and died the same way, and its MLflow run stayed RUNNING. Now it is continued
    after at most ``MAX_CUT_OFFS`` cut-offs, then failed with why, in Optuna and in MLflow; the rest train."""
    doomed = 1
    done = sweep_with_a_trial_that_kills_its_workers(tmp_path, 4, doomed)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    assert said.count("was killed (signal 9): starting another") == MAX_CUT_OFFS + 1, said[-4000:]
    study = study_of(tmp_path)
    assert study is not None
    trial = study.trials[doomed]
    assert trial.state == TrialState.FAIL and trial.user_attrs[CUT_OFFS_ATTR] == MAX_CUT_OFFS + 1
    assert f"its workers were killed {MAX_CUT_OFFS + 1} times in this trial" in trial.user_attrs[ERROR_ATTR]
    assert [t.state for t in study.trials if t.number != doomed] == [TrialState.COMPLETE] * 4, (
        "a failed trial is not counted"
    )
    children = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
    runs = {r.data.tags["optuna.trial_number"]: r for r in children}
    assert len(runs) == len(children) == 5, "one run per trial, continued across its attempts"
    assert runs[str(doomed)].info.status == "FAILED", "not left RUNNING"
    assert "out-of-memory killer" in runs[str(doomed)].data.tags["explab.status_reason"]
    assert sorted(r.info.status for n, r in runs.items() if n != str(doomed)) == ["FINISHED"] * 4


@pytest.mark.slow
@pytest.mark.chaos
def test_a_trial_whose_workers_outlast_the_pools_replacements_fails_in_mlflow_too(tmp_path: Path) -> None:
    """A pool replaces killed workers up to ``n_trials`` times; the trial a worker dies in after that is
    failed as the pool ends. Its MLflow run stayed RUNNING, though Optuna held the trial FAIL."""
    done = sweep_with_a_trial_that_kills_its_workers(tmp_path, 2, doomed=1)
    said = done.stdout + done.stderr
    assert "trial 1 was left RUNNING by a dead worker" in said, said[-4000:]
    study = study_of(tmp_path)
    assert study is not None and study.trials[1].state == TrialState.FAIL
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert not [r for r in runs if r.info.status == "RUNNING"], "nothing left RUNNING"
    (doomed,) = [r for r in runs if r.data.tags.get("optuna.trial_number") == "1"]
    assert doomed.info.status == "FAILED"
    assert doomed.data.tags["explab.status_reason"] == "trial 1 failed: its worker died, and no worker was left"


@pytest.mark.slow
@pytest.mark.chaos
def test_chaos_three_kills_of_a_two_worker_sweep_lose_at_most_an_epoch_each(tmp_path: Path) -> None:
    """Kill 1 and 2: a random worker in the middle of a trial (its command starts another). Kill 3: the
    command itself, taking both workers with it, as a lost login node would; it is started again."""
    n_trials = 10
    command = sweep_command(tmp_path, n_trials, "hydra.sweeper.n_jobs=2", f"hydra.sweep.dir={tmp_path}/multirun")
    chance = random.Random()
    # kills spread over the sweep by its progress, not by the clock, which a fast machine outruns: each waits
    # for a number of finished trials that leaves the last three to run
    kill_points = sorted(chance.randrange(n_trials - 3) for _ in range(3))
    sweep = start(command, tmp_path)
    cut_off = 0
    for kill, completed in enumerate(kill_points):
        trial = running_trial_with_epochs(tmp_path, completed)
        time.sleep(chance.uniform(0.0, 1.0))  # anywhere in its epoch
        if kill < 2:
            pid = worker_pid(trial)
            assert pid, "running_trial_with_epochs returns a trial its worker has marked"
            os.kill(pid, signal.SIGKILL)
            while process_alive(pid):  # until its pool has noticed (and reaped it)
                time.sleep(0.1)
            cut_off += 1
        else:
            sweep.send_signal(signal.SIGKILL)
            first_log = "".join(sweep.communicate(timeout=30))  # the pool logs each record as it happens
            cut_off += 2
            sweep = start(command, tmp_path)
    _, stderr = sweep.communicate(timeout=900)
    assert sweep.returncode == 0, stderr[-3000:]
    check_sweep_whole(tmp_path, n_trials)
    trained = len(epoch_lines(tmp_path))
    uninterrupted = n_trials * EPOCHS  # no pruner, no early stop within EPOCHS: every trial trains them all
    assert uninterrupted <= trained <= uninterrupted + cut_off, (trained, uninterrupted, cut_off)
    # the study alone cannot show it: the restarted command's workers may hold every trial by the end
    assert first_log.count("was killed (signal 9): starting another") == 2, first_log[-3000:]
