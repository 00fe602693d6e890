"""Workers of one sweep on several hosts: each runs in a UTS namespace of its own (``unshare --uts``), so it
has its own host name and is judged by heartbeats, not by its pid, as a worker on another node is. A host's
clock is set behind with libfaketime; a host that hangs is a worker stopped with SIGSTOP."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from explab.sweep.heartbeat import HEARTBEAT_ATTR, MISSED_BEATS, WORKER_ATTR
from explab.tracking.store import open_client
from tests.conftest import BIN, in_a_container, root_env, runs_in, tracking_uri_for
from tests.sweep.test_sweeper import load, load_once_written, plain_app_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None, reason="a host name of its own needs root and unshare"
    ),
]

BEAT = 0.5


def on_host(host: str, command: list[str], cwd: Path, clock_behind_s: int = 0) -> subprocess.Popen[str]:
    """``command`` started on ``host``, its clock ``clock_behind_s`` behind this one's."""
    env = root_env()
    if clock_behind_s:
        import libfaketime

        _, preload = libfaketime.get_reload_information()
        env.update(preload, FAKETIME=f"-{clock_behind_s}s")
    named = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host, *command]
    return subprocess.Popen(named, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def quadratic(tmp_path: Path, folder: str, *args: str) -> list[str]:
    """A worker of the quadratic app's study ``hosts`` in ``tmp_path``, its jobs' folders under ``folder``."""
    return plain_app_command(
        tmp_path, "hosts", f"hydra.sweeper.heartbeat_seconds={BEAT}", f"hydra.sweep.dir={tmp_path}/{folder}", *args
    )


def worker(host: str, tmp_path: Path, *args: str, clock_behind_s: int = 0) -> subprocess.Popen[str]:
    """A worker of the quadratic app's study ``hosts`` in ``tmp_path``, on ``host``."""
    return on_host(host, quadratic(tmp_path, host, *args), tmp_path, clock_behind_s)


def beating_trial(tmp_path: Path, worker: subprocess.Popen[str]) -> float:
    """Wait for the first trial to run with a heartbeat; the time (by this host's clock) it was first seen."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and worker.poll() is None:
        study = load_once_written(tmp_path, "hosts")
        if study is not None and study.trials and HEARTBEAT_ATTR in study.trials[0].user_attrs:
            return time.time()
        time.sleep(0.2)
    raise AssertionError(f"no trial ran (exit code {worker.poll()})")


def ran(record: Path) -> list[str]:
    """The trial numbers whose jobs ran to the end, once per job."""
    return sorted(line.split(",")[0] for line in record.read_text().splitlines())


def test_a_live_trial_on_a_host_whose_clock_is_behind_is_not_taken_from_it(tmp_path: Path) -> None:
    """node-a's beats read a minute old on node-b's clock, yet they keep coming: node-b leaves the trial to it
    and says whose clock to set right; no trial runs twice."""
    record = tmp_path / "ran.csv"
    trials = ("hydra.sweeper.n_trials=2", "sleep=8", f"record={record}")
    behind = worker("node-a", tmp_path, *trials, clock_behind_s=60)
    beating_trial(tmp_path, behind)
    ahead = worker("node-b", tmp_path, *trials)
    said_ahead, _ = ahead.communicate(timeout=180)
    said_behind, _ = behind.communicate(timeout=180)
    assert (behind.returncode, ahead.returncode) == (0, 0), said_ahead[-3000:] + said_behind[-3000:]
    assert "was cut off" not in said_ahead, said_ahead[-3000:]
    lag = re.search(r"trial 0 looked cut off, but its worker node-a:\d+ is still beating: node-a's clock is "
                    r"about (\d+) s behind this host's \(node-b\)", said_ahead)  # fmt: skip
    assert lag and 50 <= int(lag.group(1)) <= 70, said_ahead[-3000:]
    assert ran(record) == ["0", "1"], "each trial ran once"
    assert [t.state for t in load(tmp_path, "hosts").trials] == [TrialState.COMPLETE] * 2


def test_a_worker_that_hung_and_finds_its_trial_taken_over_ends_at_once(tmp_path: Path) -> None:
    """node-a hangs in its trial (a suspended job, a paused VM); node-b takes the trial over once its beats
    stop. When node-a wakes it ends at once, as node-b took it to have ended: the trial's job runs to its end
    once, on node-b, and node-a's sweep says why it stopped."""
    record = tmp_path / "ran.csv"
    # a job still sleeping when node-a wakes, as a training is in the middle of its epochs
    trial = ("hydra.sweeper.n_trials=1", "sleep=15", f"record={record}")
    hung = worker("node-a", tmp_path, *trial)
    seen = beating_trial(tmp_path, hung)
    time.sleep(max(0.0, seen + 2 - time.time()))  # inside the trial's job
    os.kill(hung.pid, signal.SIGSTOP)
    try:
        # by the time node-b looks, the beats are late enough to count as a worker gone
        time.sleep((MISSED_BEATS + 1) * BEAT)
        taker = worker("node-b", tmp_path, *trial)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and taker.poll() is None:
            if str(load(tmp_path, "hosts").trials[0].user_attrs[WORKER_ATTR]).startswith("node-b:"):
                break
            time.sleep(0.2)
    finally:
        os.kill(hung.pid, signal.SIGCONT)
    said_hung, _ = hung.communicate(timeout=60)
    said_taker, _ = taker.communicate(timeout=180)
    assert hung.returncode == -signal.SIGKILL, said_hung[-3000:]
    assert re.search(
        r"trial 0 was taken over by worker node-b:\d+ while this worker \(node-a:\d+\) was stalled", said_hung
    )
    assert taker.returncode == 0, said_taker[-3000:]
    assert re.search(r"trial 0's worker node-a:\d+ last beat \d+ s ago, by this host's clock: watching it 1 s more",
                     said_taker), said_taker[-3000:]  # fmt: skip
    assert "trial 0 was cut off (worker node-a:" in said_taker
    assert ran(record) == ["0"], "the trial's job ran to its end once"
    assert [t.state for t in load(tmp_path, "hosts").trials] == [TrialState.COMPLETE]


def test_a_trial_whose_node_was_lost_goes_on_in_its_own_run_on_another_host(tmp_path: Path) -> None:
    """node-a dies with its trial (SIGKILL: nothing ends its run, RUNNING on node-a); node-b adopts the trial
    once its beats stop and continues the same MLflow run from its last.ckpt. ``resume=`` alone refuses a
    RUNNING run of another host, which it cannot tell is gone: the trial FAILED and the sweep stopped."""
    epochs = 12
    sweep = [
        str(BIN / "explab-train"), "-m", "hparams_search=digits_optuna", "hydra/sweeper/pruner=none",
        f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs", "hydra.sweeper.n_trials=1",
        f"hydra.sweeper.heartbeat_seconds={BEAT}", f"trainer.max_epochs={epochs}", "data.batch_size=8",
        "callbacks.early_stopping.patience=1000", "callbacks.last_checkpoint.min_interval_seconds=0",
        "trainer.enable_progress_bar=false", "log_model=false", "log_plots=false",
    ]  # fmt: skip
    lost = on_host("node-a", sweep, tmp_path)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and lost.poll() is None and not list(tmp_path.glob("logs/**/last.ckpt")):
        time.sleep(0.2)
    lost.kill()
    said_lost, _ = lost.communicate(timeout=60)
    assert list(tmp_path.glob("logs/**/last.ckpt")), said_lost[-3000:]

    taker = on_host("node-b", sweep, tmp_path)
    said, _ = taker.communicate(timeout=300)
    assert taker.returncode == 0, said[-3000:]
    assert "trial 0 was cut off (worker node-a:" in said
    study = load(tmp_path / "mlruns" / "optuna", "digits_cnn_optuna", "digits_cnn.journal")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    [run] = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
    assert run.info.status == "FINISHED"
    assert (run.data.tags["hostname"], run.data.tags["explab.resumed_from_host"]) == ("node-b", "node-a")
    assert "worker was cut off while this run was RUNNING on node-a" in run.data.tags["explab.resumed_after"]
    client = open_client(tracking_uri_for(tmp_path / "mlruns"))
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert len(steps) == len(set(steps)) == epochs, "each epoch once, in the one run"


def test_a_trial_whose_worker_died_in_a_container_of_this_host_is_adopted(tmp_path: Path) -> None:
    """A worker in a container with its own PID namespace but this host's name marks its trial ``HOST:1``.
    Once it is killed, this host's pid 1 (init) is alive, so the trial looked held for ever: nobody adopted
    it and the study could never finish. Its pid now counts only in its own namespace; its beats decide."""
    trial = ("hydra.sweeper.n_trials=1", "sleep=4")
    contained = subprocess.Popen(
        in_a_container(quadratic(tmp_path, "contained", *trial)), cwd=tmp_path, env=root_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    beating_trial(tmp_path, contained)
    contained.kill()
    contained.communicate(timeout=60)
    assert load(tmp_path, "hosts").trials[0].user_attrs[WORKER_ATTR] == f"{socket.gethostname()}:1"
    time.sleep((MISSED_BEATS + 1) * BEAT)

    done = subprocess.run(
        quadratic(tmp_path, "here", *trial), cwd=tmp_path, env=root_env(), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"trial 0 was cut off (worker {socket.gethostname()}:1 is gone)" in done.stdout + done.stderr
    assert [t.state for t in load(tmp_path, "hosts").trials] == [TrialState.COMPLETE]
