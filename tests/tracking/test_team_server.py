"""The team setup end to end: `mlflow server` on PostgreSQL receives a training run and a sweep whose Optuna
study lives in the same PostgreSQL, from concurrent worker processes; the REST API returns every run.

PostgreSQL itself is installed by `.ci/run` (Debian's `postgresql`); the test starts its own cluster in a
temporary folder, bound to 127.0.0.1, through `scripts/team_server.sh` (what `make server` runs), and
stops it.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, MACHINE_TEMP
from tests.support.network import free_port, wait_until_answering

ROOT = Path(__file__).parents[2]
PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PG_BIN, reason="PostgreSQL server binaries missing: .ci/run installs Debian's postgresql"),
]


def get_json(url: str, payload: dict | None = None) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def pg_ctl(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pg_ctl`` on the cluster of ``folder``, as the postgres user (it refuses root)."""
    command = str(Path(PG_BIN[-1]).parent / "pg_ctl")
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", command, "-D", str(folder / "pg"), *args], capture_output=True, text=True
    )


def start_team_server(folder: Path, pg_port: int, port: int) -> subprocess.Popen[bytes]:
    """``scripts/team_server.sh`` with its cluster in ``folder``, in its own process group, once it answers."""
    env = {
        **os.environ,
        "PGDATA": str(folder / "pg"),
        "PGPORT": str(pg_port),
        "PORT": str(port),
        "ARTIFACTS": str(folder / "artifacts"),
        "WORKERS": "1",
        "BIN": str(BIN),
        "HOST": "127.0.0.1",
    }
    with (folder / "server.log").open("w") as log:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "team_server.sh")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_until_answering(f"http://127.0.0.1:{port}/health", proc, (folder / "server.log").read_text)
    return proc


def new_cluster_folder() -> Path:
    # the postgres user writes its cluster below it: in the machine's temporary folder, which it can enter
    folder = Path(tempfile.mkdtemp(prefix="explab-pg-", dir=MACHINE_TEMP))
    folder.chmod(0o755)
    return folder


def remove_cluster(folder: Path) -> None:
    pg_ctl(folder, "-m", "immediate", "stop")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def folder() -> Iterator[Path]:
    folder = new_cluster_folder()
    yield folder
    remove_cluster(folder)


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    folder = new_cluster_folder()
    pg_port, port = free_port(), free_port()
    try:
        proc = start_team_server(folder, pg_port, port)
        try:
            yield {"uri": f"http://127.0.0.1:{port}", "optuna": f"postgresql://postgres@127.0.0.1:{pg_port}/optuna"}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    finally:
        remove_cluster(folder)


def test_ctrl_c_stops_the_server_and_the_database_it_started(folder: Path) -> None:
    """The cluster outlived a Ctrl-C of `make server`, and the next `make server` failed: "pg_ctl: could not
    start server"."""
    proc = start_team_server(folder, free_port(), free_port())
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches its whole foreground process group
    assert proc.wait(timeout=60) == 0, (folder / "server.log").read_text()[-2000:]
    assert pg_ctl(folder, "status").returncode == 3, "no server running"


def test_server_receives_concurrent_training_and_sweep(server: dict[str, str], tmp_path: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": server["uri"]}
    common = [
        f"paths.log_dir={tmp_path}/logs",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "torch_threads=1",
    ]
    sweep = [
        str(BIN / "explab-train"),
        "-m",
        "hparams_search=digits_optuna",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={server['optuna']}",
        *common,
    ]
    commands = [[str(BIN / "explab-train"), *common], sweep, sweep]
    procs = [
        subprocess.Popen(c, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    failed = [o[1] for p, o in zip(procs, outputs, strict=True) if p.returncode != 0]
    assert not failed, "\n".join(line for err in failed for line in err.splitlines() if "Error" in line)

    experiment = get_json(f"{server['uri']}/api/2.0/mlflow/experiments/get-by-name?experiment_name=digits_cnn")
    found = get_json(
        f"{server['uri']}/api/2.0/mlflow/runs/search",
        {"experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 100},
    )["runs"]
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in found]
    trials = [t for t in tags if "optuna.trial_number" in t]
    parents = [t for t in tags if t.get("explab.sweep") == "parent"]
    assert len(found) == 5, "one training run, three trials, one sweep parent"
    assert sorted(t["optuna.trial_number"] for t in trials) == ["0", "1", "2"]
    assert len(parents) == 1 and all(t["mlflow.parentRunId"] for t in trials)
    for run in found:
        assert run["info"]["status"] == "FINISHED"
        assert run["data"].get("metrics"), run["info"]["run_name"]
    trial_metrics = [
        {m["key"] for m in run["data"]["metrics"]}
        for run, t in zip(found, tags, strict=True)
        if "optuna.trial_number" in t
    ]
    assert all("val/acc_best" in keys for keys in trial_metrics)
    [parent] = [run for run, t in zip(found, tags, strict=True) if t.get("explab.sweep") == "parent"]
    page = f"{server['uri']}/#/experiments/{parent['info']['experiment_id']}/runs/{parent['info']['run_id']}?"
    said = "".join(out + err for out, err in outputs[1:])
    assert f"its trials in the UI: {page}" in said, "the sweep links its parent on the server that holds it"


@pytest.mark.parametrize("given", ["environment", "command line"])
def test_a_password_in_the_tracking_uri_is_recorded_nowhere(server: dict[str, str], tmp_path: Path, given: str) -> None:
    """The tracking URI resolves into the config (logger.mlflow.tracking_uri) that every run records; given on
    the command line it is also in the command and the overrides a run records."""
    with_password = server["uri"].replace("http://", "http://lab:s3cret@")
    env = {**os.environ, "MLFLOW_TRACKING_URI": with_password}
    on_command_line = [f"logger.mlflow.tracking_uri={with_password}"] if given == "command line" else []
    experiment_name = f"secrets_{given.replace(' ', '_')}"
    done = subprocess.run(
        [
            str(BIN / "explab-train"),
            f"paths.log_dir={tmp_path}/logs",
            "trainer.max_epochs=1",
            f"experiment_name={experiment_name}",
            *on_command_line,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # MLflow's own "View run ... at: URL" would print the URI as typed, into a cluster job's log file too
    assert "s3cret" not in done.stdout + done.stderr
    experiment = get_json(f"{server['uri']}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment_name}")
    [run] = get_json(
        f"{server['uri']}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment"]["experiment_id"]]}
    )["runs"]
    # the run's page is on the server that holds it, not in the local UI `make ui` would serve
    page = f"{server['uri']}/#/experiments/{run['info']['experiment_id']}/runs/{run['info']['run_id']}?workflowType="
    assert f"UI: {page}" in done.stdout + done.stderr, done.stderr[-1000:]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["logger.mlflow.tracking_uri"] == with_password.replace("s3cret", "***")
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert not [key for key, value in tags.items() if "s3cret" in value], "the command tag included"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server["uri"])
    downloaded = Path(client.download_artifacts(run["info"]["run_id"], "", str(tmp_path / "artifacts")))
    # (a checkout with this file uncommitted records the file itself in config/git_diff.patch)
    leaking = [
        str(p)
        for p in downloaded.rglob("*")
        if p.is_file() and p.name != "git_diff.patch" and b"s3cret" in p.read_bytes()
    ]
    assert not leaking, "config, overrides, checkpoints and the logged model record the URI masked"
    # Hydra's own record of the command line (.hydra/) stays on this machine, as typed
    local = [p for p in (tmp_path / "logs").rglob("*") if p.is_file() and ".hydra" not in p.parts]
    assert not [p for p in local if b"s3cret" in p.read_bytes()]
    if given == "command line":  # recorded masked, so a resume leaves it out for the URI it is given now
        resumed = subprocess.run(
            [
                str(BIN / "explab-train"), f"resume={run['info']['run_id']}", "trainer.max_epochs=2",
                f"paths.log_dir={tmp_path}/logs",
            ],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_a_second_server_on_the_same_port_says_the_port_is_taken(server: dict[str, str], folder: Path) -> None:
    """MLflow logged its bind error and exited 0, after the script had printed the other program's address."""
    port = int(server["uri"].rpartition(":")[2])
    env = {**os.environ, "PGDATA": str(folder / "pg"), "PORT": str(port), "BIN": str(BIN), "HOST": "127.0.0.1"}
    done = subprocess.run(
        [str(ROOT / "scripts" / "team_server.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{server['uri']} is taken by another program" in done.stderr and f"PORT={port + 1}" in done.stderr
    assert not (folder / "pg").exists(), "refused before a cluster was made"


def test_make_server_installs_the_driver_of_its_store_first(tmp_path: Path) -> None:
    """`make train`'s environment has no extras, and MLflow could not open the PostgreSQL store: "No module
    named 'psycopg'"."""
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "server", f"VENV={tmp_path}/venv"], capture_output=True, text=True, check=True
    )
    steps = done.stdout.splitlines()
    [install] = [i for i, step in enumerate(steps) if "pip install" in step and "-e '.[postgres]'" in step]
    [serve] = [i for i, step in enumerate(steps) if "team_server.sh" in step]
    assert install < serve, done.stdout
