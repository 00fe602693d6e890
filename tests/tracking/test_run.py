"""How a run's outcome maps to its MLflow status, and that no stop leaves a run RUNNING (a real sqlite store)."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from explab.errors import UsageError
from explab.tracking.run import TrackedRun, fresh_run_name, run_lifecycle, run_status_for, stop_described
from explab.utils.signals import Terminated
from tests.conftest import in_a_container, run_cli, runs_in, tracking_uri_for


def test_run_status_mapping() -> None:
    assert run_status_for(None) == "FINISHED"
    assert run_status_for(KeyboardInterrupt()) == "KILLED"
    assert run_status_for(SystemExit(1)) == "KILLED"
    assert run_status_for(ValueError()) == "FAILED"


def test_stops_are_described_as_the_stop_not_as_the_exit() -> None:
    def ctrl_c_in_lightnings_fit() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemExit(1)  # what Lightning's handler of a Ctrl-C in fit does  # noqa: B904

    with pytest.raises(SystemExit) as exit_:
        ctrl_c_in_lightnings_fit()
    assert stop_described(exit_.value) == "Interrupted (Ctrl-C)"
    assert stop_described(KeyboardInterrupt()) == "Interrupted (Ctrl-C)"
    assert stop_described(Terminated(128 + signal.SIGUSR1)) == "Terminated by SIGUSR1"
    assert stop_described(SystemExit(1)) is None
    assert stop_described(ValueError("broken batch")) is None


def _status(run: TrackedRun) -> str:
    return run.client.get_run(run.run_id).info.status


def test_a_run_ends_finished_or_failed_with_its_error(tmp_path: Path) -> None:
    uri = tracking_uri_for(tmp_path)
    with run_lifecycle(lambda: TrackedRun.create(uri, "lifecycle", str(tmp_path / "artifacts"))) as finished:
        assert _status(finished) == "RUNNING"
    assert _status(finished) == "FINISHED"
    with (
        pytest.raises(ValueError),
        run_lifecycle(lambda: TrackedRun.create(uri, "lifecycle", str(tmp_path / "artifacts"))) as failed,
    ):
        raise ValueError("broken batch")
    assert _status(failed) == "FAILED"
    assert failed.client.get_run(failed.run_id).data.tags["explab.status_reason"] == "ValueError: broken batch"


def test_a_resume_that_trains_on_leaves_no_reason_of_the_ending_it_is_past(tmp_path: Path) -> None:
    """Terminated, then resumed once without training (its failure tagged), then resumed to its end: the
    FINISHED run kept "Terminated by SIGTERM" as the reason it ended, and the failed resume's tag."""
    uri = tracking_uri_for(tmp_path)
    with (
        pytest.raises(Terminated),
        run_lifecycle(lambda: TrackedRun.create(uri, "lifecycle", str(tmp_path / "artifacts"))) as run,
    ):
        raise Terminated(128 + signal.SIGTERM)
    with pytest.raises(ValueError), run_lifecycle(lambda: TrackedRun.reopen(uri, run.run_id)):
        raise ValueError("no checkpoint")  # before training: the run stays KILLED, its reason kept
    tags = run.client.get_run(run.run_id).data.tags
    assert _status(run) == "KILLED" and tags["explab.status_reason"] == "Terminated by SIGTERM"
    assert tags["explab.resume_failed"] == "ValueError: no checkpoint"
    with run_lifecycle(lambda: TrackedRun.reopen(uri, run.run_id)) as resumed:
        resumed.training_resumed()
    tags = run.client.get_run(run.run_id).data.tags
    assert _status(run) == "FINISHED" and tags["explab.resumed_after"] == "KILLED: Terminated by SIGTERM"
    assert "explab.status_reason" not in tags and "explab.resume_failed" not in tags


def test_sigterm_while_the_run_is_opened_ends_it_killed(tmp_path: Path) -> None:
    """A scheduler's stop landing just after the store created the run, before the code holds it."""
    uri = tracking_uri_for(tmp_path)
    opened: list[TrackedRun] = []

    def open_then_stopped() -> TrackedRun:
        opened.append(TrackedRun.create(uri, "lifecycle", str(tmp_path / "artifacts")))
        os.kill(os.getpid(), signal.SIGTERM)
        return opened[0]

    body = []
    with pytest.raises(Terminated), run_lifecycle(open_then_stopped):
        body.append("trained")
    assert body == [] and _status(opened[0]) == "KILLED"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.slow
def test_a_multiruns_runs_are_named_by_the_values_that_differ_between_its_jobs(tmp_path: Path) -> None:
    """MLflow's random names (``bold-fox-89``) said nothing in the UI's run list and chart legends."""
    done = run_cli(
        "explab-train", "-m", "seed=1,2", "optimizer=adam,sgd", "trainer.max_epochs=1", "log_model=false",
        "log_plots=false", "+trainer.limit_train_batches=2", f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    expected = {f"seed={seed} optimizer={name}" for seed in (1, 2) for name in ("adam", "sgd")}
    assert {r.info.run_name for r in runs} == expected
    recorded = TrackedRun(tracking_uri_for(tmp_path / "mlruns"), runs[0].info.run_id).load_text("config/overrides.yaml")
    assert "swept" not in recorded, "the run records the job's own overrides only"
    # the multirun ends with the report it was run for, as a command that works where it was typed
    said = "4 runs of this multirun finished; each configuration, over its seeds: explab-report experiment=digits_cnn "
    command = next(line for line in (done.stdout + done.stderr).splitlines() if said in line).split(": ", 1)[1].split()
    assert command[-1] == f"paths.mlruns_dir={tmp_path}/mlruns", command
    reported = run_cli(*command, cwd=tmp_path)
    assert reported.returncode == 0 and reported.stdout.count(" | 2 | ") == 2, reported.stdout[-2000:]


@pytest.mark.slow
def test_a_multirun_over_experiments_names_the_report_of_each(tmp_path: Path) -> None:
    """The runs of ``-m experiment=a,b seed=1,2`` are in two MLflow experiments: the multirun named only the
    first one's report, as if the second had trained nothing."""
    done = run_cli(
        "explab-train", "-m", "experiment=digits_cnn,diabetes_mlp", "seed=1,2", "trainer.max_epochs=1",
        "log_model=false", "log_plots=false", "+trainer.limit_train_batches=2", f"paths.mlruns_dir={tmp_path}/mlruns",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    said = dict(
        re.findall(r"2 runs of this multirun in (\w+) finished; each configuration, over its seeds: (.*)", done.stdout)
    )
    assert sorted(said) == ["diabetes_mlp", "digits_cnn"], done.stdout[-2000:]
    reported = run_cli(*said["diabetes_mlp"].split(), cwd=tmp_path)
    assert reported.returncode == 0 and reported.stdout.count(" | 2 | ") == 1, reported.stdout[-2000:]
    assert "test/r2" in reported.stdout, "the regression experiment's own metrics"


def test_run_names_do_not_follow_the_seeded_generator_and_leave_it_as_it_was() -> None:
    random.seed(7)
    first, after = fresh_run_name(), random.random()
    random.seed(7)
    assert fresh_run_name() != first, "a job seeded alike is still named apart"
    assert random.random() == after, "the training's own draws are not moved"


def test_a_run_running_in_a_live_process_is_not_taken_over_and_the_message_says_what_to_do(tmp_path: Path) -> None:
    uri = tracking_uri_for(tmp_path)
    live = TrackedRun.create(uri, "lifecycle", str(tmp_path / "artifacts"))  # this process: alive
    live.set_tags({"hostname": socket.gethostname()})  # as every run's record says where it runs
    with pytest.raises(UsageError, match=rf"is RUNNING in process {os.getpid()} on this host: stop it \(kill "):
        TrackedRun.reopen(uri, live.run_id)
    assert _status(live) == "RUNNING"

    # on another host nobody here can tell whether it lives; the message gives the way out for a lost machine
    live.set_tags({"hostname": "node7"})
    with pytest.raises(UsageError, match=r"RUNNING in process \d+ on node7: stop it there") as refused:
        TrackedRun.reopen(uri, live.run_id)
    command = str(refused.value).split("end the run yourself: ", 1)[1]
    ended = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
    assert ended.returncode == 0, ended.stderr
    assert _status(live) == "KILLED"


def test_a_run_resumed_on_another_host_names_the_host_now_answering_for_it(tmp_path: Path) -> None:
    """Resumed here, a run started on node7 is this process's: left tagged with node7, the first run created
    on node7 would close it as an orphan there, where this pid is not alive, while it trains here."""
    from explab.tracking.orphans import close_orphaned_runs

    uri = tracking_uri_for(tmp_path)
    started = TrackedRun.create(uri, "lifecycle", str(tmp_path / "artifacts"), tags={"hostname": "node7"})
    started.end(Terminated(128 + signal.SIGTERM))
    resumed = TrackedRun.reopen(uri, started.run_id)
    tags = resumed.client.get_run(resumed.run_id).data.tags
    assert (tags["hostname"], tags["explab.pid"]) == (socket.gethostname(), str(os.getpid()))
    assert tags["explab.resumed_from_host"] == "node7", "where it ran before"
    experiment_id = resumed.client.get_run(resumed.run_id).info.experiment_id
    assert close_orphaned_runs(resumed.client, experiment_id) == [], "alive here"
    assert _status(resumed) == "RUNNING"


@pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace of its own needs root")
def test_a_run_left_by_a_container_of_this_host_is_not_judged_by_its_pid(tmp_path: Path) -> None:
    """A run started in a container with its own PID namespace and this host's name records pid 1, which is
    this host's init here: its resume was refused as "RUNNING in process 1 on this host: stop it (kill 1)".
    Nothing here can tell whether it lives: the message says where it runs and how to end it."""
    uri = tracking_uri_for(tmp_path)
    opens = (
        "import time\nfrom explab.tracking.run import TrackedRun\n"
        f"print(TrackedRun.create({uri!r}, 'lifecycle').run_id, flush=True)\ntime.sleep(120)"
    )
    contained = subprocess.Popen(
        in_a_container([sys.executable, "-c", opens]),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert contained.stdout is not None
    run_id = contained.stdout.readline().strip()
    contained.kill()
    contained.wait(timeout=60)
    with pytest.raises(UsageError, match="in process 1 on this host, in another PID namespace") as refused:
        TrackedRun.reopen(uri, run_id)
    assert "kill 1" not in str(refused.value)
    command = str(refused.value).split("end the run yourself: ", 1)[1]
    assert subprocess.run(command, shell=True, check=False).returncode == 0
    assert TrackedRun.reopen(uri, run_id).client.get_run(run_id).info.status == "RUNNING"


def test_a_run_left_running_before_this_host_restarted_is_closed(tmp_path: Path) -> None:
    """After a reboot its pid may name another process, alive: the run stayed RUNNING for ever, and a resume
    said to kill that process."""
    from explab.tracking.orphans import PID_SCOPE_TAG, close_orphaned_runs, pid_scope

    uri = tracking_uri_for(tmp_path)
    left = TrackedRun.create(uri, "lifecycle", str(tmp_path / "artifacts"))
    earlier_boot = "00000000-0000-0000-0000-000000000000 " + pid_scope().split(" ")[-1]
    left.set_tags({PID_SCOPE_TAG: earlier_boot, "explab.pid": "1"})  # as the run's process recorded it then
    experiment_id = left.client.get_run(left.run_id).info.experiment_id
    assert close_orphaned_runs(left.client, experiment_id) == [left.run_id]
    ended = left.client.get_run(left.run_id)
    assert ended.info.status == "KILLED"
    assert ended.data.tags["explab.status_reason"] == f"{socket.gethostname()} restarted since process 1 ran this run"


def test_a_deleted_experiment_is_named_with_how_to_restore_it(tmp_path: Path) -> None:
    """MLflow refuses runs in an experiment deleted in its UI, and its name stays taken: every run of the
    experiment failed with MLflow's traceback."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri_for(tmp_path / "mlruns")
    first = TrackedRun.create(uri, "digits_cnn")
    first.end(None)
    client = MlflowClient(uri)
    experiment_id = client.get_run(first.run_id).info.experiment_id
    client.delete_experiment(experiment_id)
    with pytest.raises(UsageError, match="experiment 'digits_cnn' is deleted") as refused:
        TrackedRun.create(uri, "digits_cnn")
    assert f"mlflow experiments restore --experiment-id {experiment_id}" in str(refused.value)
    assert "experiment_name=NEW_NAME" in str(refused.value)
    client.restore_experiment(experiment_id)
    again = TrackedRun.create(uri, "digits_cnn")
    again.end(None)
    assert client.get_run(again.run_id).info.experiment_id == experiment_id
    # explab-report reads the experiment: it is named the same way before anything is reported
    client.delete_experiment(experiment_id)
    done = run_cli(
        "explab-report", "experiment_name=digits_cnn", f"paths.mlruns_dir={tmp_path / 'mlruns'}", cwd=tmp_path
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "experiment 'digits_cnn' is deleted" in done.stderr and "mlflow experiments restore" in done.stderr
