"""A store on a disk that fills up (a full scratch disk, a home quota on a cluster): one line saying so and
what became of the run, the run ended, and the command it prints continues once there is room."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from explab.config import sqlite_store
from tests.conftest import BIN, run_cli, runs_in
from tests.support.network import free_port, wait_until_answering

pytestmark = pytest.mark.slow

# what the one line says of the run: its id, how it is recorded, and the command that continues it
STOPPED_RUN = re.compile(
    r"could not take a write \((.+?)\): run (\w+) stopped(?: and is recorded (\w+)|, and could not be recorded as "
    r"ended: it shows (RUNNING) until .+?); once there is room, (explab-train \S+) "
)


def _new_store_on(disk: Path) -> int:
    """Create an empty MLflow store on ``disk`` as a run would; the KiB the disk then holds."""
    create = f"from explab.tracking.store import open_client; open_client({sqlite_store(disk)!r})"
    subprocess.run([str(BIN / "python"), "-c", create], check=True, capture_output=True)
    return shutil.disk_usage(disk).used // 1024


def test_a_store_that_fills_up_names_itself_and_the_run_goes_on_once_there_is_room(small_disk, tmp_path) -> None:
    disk, resize = small_disk
    paths = [f"paths.mlruns_dir={disk}", f"paths.log_dir={tmp_path}/logs"]
    empty_store = _new_store_on(disk)

    resize(empty_store + 8)  # no room even for SQLite's shared-memory file, which opening the store sizes
    done = run_cli("explab-report", "experiment_name=digits_cnn", *paths, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "as SQLite sized its shared-memory file" in done.stderr and "cannot even be opened" in done.stderr

    resize(empty_store + 64)  # room for SQLite's shared-memory file, not for an experiment and a run
    done = run_cli("explab-train", "trainer.max_epochs=2", *paths, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"The MLflow store {sqlite_store(disk)} could not take a write (database or disk is full)" in done.stderr
    assert "no run was created, and nothing trained" in done.stderr and f"disk of {disk}" in done.stderr

    resize(empty_store + 400)  # a run's first metrics, not its checkpoint, model and plots as well
    done = run_cli("explab-train", "trainer.max_epochs=20", *paths, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "ERROR mlflow.store" not in done.stderr, "MLflow's own traceback of each refused write"
    said = STOPPED_RUN.search(done.stderr)
    assert said, done.stderr[-3000:]
    _, run_id, ended, running, continued_by = said.groups()
    [run] = runs_in(disk, "digits_cnn")
    assert (run.info.run_id, run.info.status) == (run_id, ended or running)
    assert run.info.status in ("FAILED", "RUNNING")

    resize(8 * 1024)
    again = run_cli(*continued_by.split(), *paths, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    finished = [r for r in runs_in(disk, "digits_cnn") if r.info.status == "FINISHED"]
    assert len(finished) == 1 and "test/acc" in finished[0].data.metrics
    if continued_by.startswith("explab-train resume="):
        assert finished[0].info.run_id == run_id


@pytest.mark.parametrize("workers", [1, 2])
def test_a_sweep_whose_records_fill_up_stops_in_one_line_and_the_same_command_finishes_it(
    small_disk, tmp_path, workers: int
) -> None:
    """The study's journal was left with a torn last record, which the next append continued: Optuna then
    read bad JSON and the sweep could neither go on nor be reported. Two workers each stop with the line."""
    disk, resize = small_disk
    sweep = [
        "-m",
        "hparams_search=digits_optuna",
        "hydra.sweeper.n_trials=6",
        f"hydra.sweeper.n_jobs={workers}",
        # a trial asked and never marked before the disk filled is continued once no worker marks it for 3 beats
        "hydra.sweeper.heartbeat_seconds=2",
        "trainer.max_epochs=4",
        f"paths.mlruns_dir={disk}",
        f"paths.log_dir={tmp_path}/logs",
    ]
    resize(_new_store_on(disk) + 768)  # room for a trial or two
    done = run_cli("explab-train", *sweep, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert re.search(
        rf"Error: The sweep stopped: its records could not take a write \(.+\) in {disk}\. The study keeps its \d of 6 "
        "finished trials; free space there \\(or raise your quota\\), then the same command goes on with it",
        done.stderr,
    ), done.stderr[-3000:]
    assert (disk / "optuna" / "digits_cnn.journal").read_bytes().endswith(b"\n"), "no torn record"

    resize(16 * 1024)
    again = run_cli("explab-train", *sweep, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert "6/6 trials finished" in said and "Best trial" in said, said[-3000:]
    statuses = [r.info.status for r in runs_in(disk, "digits_cnn")]
    assert "RUNNING" not in statuses and statuses.count("FINISHED") >= 2, statuses


def test_a_store_over_its_quota_is_named_as_a_full_one(tmp_path) -> None:
    """SQLite reports only ENOSPC as full: over a quota (EDQUOT), as over a file size limit (EFBIG, set here
    with ulimit), its write fails as "disk I/O error"."""
    store = tmp_path / "mlruns"
    _new_store_on(store)
    train = (
        f"trap '' XFSZ; ulimit -f 300; exec {BIN}/explab-train trainer.max_epochs=30 checkpoint=none "
        f"log_model=false paths.mlruns_dir={store} paths.log_dir={tmp_path}/logs"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(["bash", "-c", train], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    said = STOPPED_RUN.search(done.stderr)
    assert said, done.stderr[-3000:]
    reason, run_id, ended, running, continued_by = said.groups()
    assert reason == "disk I/O error as SQLite wrote, which a quota or a file size limit gives"
    assert continued_by == f"explab-train reproduce={run_id}", "checkpoint=none keeps no last.ckpt"
    [run] = runs_in(store, "digits_cnn")
    assert (run.info.run_id, run.info.status) == (run_id, ended or running)


def test_a_tracking_server_whose_disk_fills_up_is_named_and_the_run_goes_on_once_there_is_room(
    small_disk, tmp_path
) -> None:
    """A team server's database on a full disk answers each write 503; the client retried for minutes, then
    ended in a traceback of "too many 503 error responses"."""
    disk, resize = small_disk
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with (tmp_path / "server.log").open("w") as log:
        server = subprocess.Popen(
            [
                str(BIN / "mlflow"), "server", "--backend-store-uri", sqlite_store(disk),
                "--default-artifact-root", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1",
            ],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{uri}/health", server, (tmp_path / "server.log").read_text)
        resize(shutil.disk_usage(disk).used // 1024 + 160)  # room for a run, not for its epochs' metrics
        # MLflow's client retries a refused write 7 times, for two minutes; the test's patience is shorter
        client_env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}
        client_env["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
        train = ["trainer.max_epochs=30", "callbacks.early_stopping=null", f"paths.log_dir={tmp_path}/logs"]
        done = run_cli("explab-train", *train, cwd=tmp_path, env=client_env)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
        said = STOPPED_RUN.search(done.stderr)
        assert said, done.stderr[-3000:]
        reason, run_id, _, _, continued_by = said.groups()
        assert reason.startswith("it answered 503 Service Unavailable to every retry"), reason
        assert done.stderr.rstrip().endswith(
            "Free space on the server's disk, once its log has confirmed the error, or record into another store: "
            "paths.mlruns_dir=FOLDER or MLFLOW_TRACKING_URI"
        ), done.stderr[-1000:]
        assert "database or disk is full" in (tmp_path / "server.log").read_text()

        resize(8 * 1024)
        again = run_cli(*continued_by.split(), f"paths.log_dir={tmp_path}/logs", cwd=tmp_path, env=client_env)
        assert again.returncode == 0, again.stderr[-3000:]
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("digits_cnn").experiment_id])
        finished = [r.info.run_id for r in runs if r.info.status == "FINISHED"]
        # resume= where the run had written last.ckpt before the disk filled, reproduce= (a new run) otherwise
        assert finished == [run_id] if continued_by.startswith("explab-train resume=") else len(finished) == 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
