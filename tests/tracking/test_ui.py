"""The links explab prints into the MLflow UI."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from explab.config import sqlite_store
from explab.tracking.store import open_client
from explab.tracking.ui import report_command, server_ui, ui_command
from tests.conftest import BIN, ROOT
from tests.support.network import free_port, wait_until_answering


@pytest.mark.parametrize(
    ("tracking_uri", "ui"),
    [
        ("http://lab:s3cret@10.0.0.5:5000", "http://10.0.0.5:5000"),  # the browser asks for the password itself
        ("https://tracking.lab.org/mlflow/", "https://tracking.lab.org/mlflow/"),  # a server behind a path
        ("http://[::1]:5000?x=1", "http://[::1]:5000"),
        ("sqlite:////home/me/explab/mlruns/mlflow.db", None),  # `make ui` serves it
        ("postgresql://lab:s3cret@db/mlflow", None),
        ("/home/me/mlruns", None),
    ],
)
def test_a_tracking_server_serves_its_own_ui_without_the_uris_password(tracking_uri: str, ui: str | None) -> None:
    assert server_ui(tracking_uri) == ui


def test_the_command_that_serves_a_store_names_any_store_but_the_checkouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert ui_command(sqlite_store(ROOT / "mlruns")) == "make ui"
    # paths.root_dir or paths.mlruns_dir moved, to scratch space say: the folder is the store's
    assert ui_command(sqlite_store(tmp_path / "mlruns")) == f"make ui MLRUNS={tmp_path.resolve()}/mlruns"
    # MLFLOW_TRACKING_URI naming a file of another name, or a database: the store itself, without a password
    assert ui_command(f"sqlite:///{tmp_path}/lab.db") == f"make ui STORE=sqlite:///{tmp_path}/lab.db"
    assert ui_command("postgresql://lab:s3cret@db/mlflow") == "make ui STORE='postgresql://lab:***@db/mlflow'"


def test_the_command_names_the_checkout_when_run_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lab's own repository (examples/wine_lab) runs explab's commands from its folder, with no Makefile."""
    monkeypatch.chdir(tmp_path)
    assert ui_command(sqlite_store(ROOT / "mlruns")) == f"make -C {ROOT} ui"
    assert ui_command(sqlite_store(tmp_path / "mlruns")) == f"make -C {ROOT} ui MLRUNS={tmp_path.resolve()}/mlruns"


def test_make_ui_over_a_file_that_is_no_store_says_so_without_a_traceback(tmp_path: Path) -> None:
    """What ``make ui STORE=...`` runs before it starts MLflow's UI."""
    (tmp_path / "notes.db").write_text("not a database")
    done = subprocess.run(
        [
            str(BIN / "python"),
            "-m",
            "explab.tracking.ui",
            f"sqlite:///{tmp_path}/notes.db",
            f"http://127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"Error: The MLflow tracking store sqlite:///{tmp_path}/notes.db is not a database" in done.stderr


def test_make_ui_over_a_mistyped_folder_refuses_and_creates_nothing(tmp_path: Path) -> None:
    """MLflow's UI created the store, tables and folder, and served it empty, as if the runs were gone."""
    typo = tmp_path / "mlrnus"
    make_ui = subprocess.Popen(
        ["make", "-C", str(ROOT), "ui", f"MLRUNS={typo}", f"PORT={free_port()}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = make_ui.communicate(timeout=120)
    finally:  # a UI that did start is stopped with its workers
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make_ui.pid, signal.SIGKILL)
    done = subprocess.CompletedProcess(make_ui.args, make_ui.returncode, stdout, stderr)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"There is no MLflow store at {typo}/mlflow.db" in done.stderr and "MLRUNS=FOLDER" in done.stderr
    assert not typo.exists()


@pytest.mark.slow
def test_a_store_in_a_folder_with_a_space_is_served_by_the_command_printed_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command was printed unquoted (``make ui MLRUNS=/data/my runs``), and the Makefile split the store's
    path at the space even when it was quoted."""
    folder = tmp_path / "my runs"
    client = open_client(sqlite_store(folder))
    client.create_run(client.create_experiment("spaced", artifact_location=(folder / "artifacts").as_uri()))
    monkeypatch.chdir(tmp_path)
    command = ui_command(sqlite_store(folder))
    assert shlex.split(command) == ["make", "-C", str(ROOT), "ui", f"MLRUNS={folder.resolve()}"]
    report = report_command("spaced", sqlite_store(folder), None)
    assert shlex.split(report)[-1] == f"paths.mlruns_dir={folder.resolve()}"

    port = free_port()
    ui = subprocess.Popen(
        ["bash", "-c", f"{command} PORT={port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{base}/health", ui, lambda: ui.stdout.read() if ui.poll() is not None else "")
        search = urllib.request.Request(
            f"{base}/ajax-api/2.0/mlflow/experiments/search",
            data=json.dumps({"max_results": 10}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(search, timeout=10) as answer:
            served = [e["name"] for e in json.load(answer)["experiments"]]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ui.pid, signal.SIGKILL)
    assert "spaced" in served
