"""The tracking store: its SQLite connection settings, the check made before it is opened, and how its URL is shown."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient

from explab.tracking.store import TrackingStoreError, _store_lock, check_store, every_run, open_client, shown_url
from tests.conftest import run_cli, runs_in, tracking_uri_for


def test_store_connections_use_wal_and_commit_without_waiting_for_the_disk(tmp_path) -> None:
    client = open_client(f"sqlite:///{tmp_path}/mlflow.db")
    client.create_experiment("any")
    with client._tracking_client.store.engine.connect() as connection:  # MLflow's own pooled connection
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1, "NORMAL"
    with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",), "kept in the file"
    other = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/other.db")
    with other.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2, "other files keep FULL"
    other.dispose()


def test_a_store_another_process_is_creating_is_waited_for_not_called_foreign(tmp_path) -> None:
    database = tmp_path / "mlflow.db"
    uri = f"sqlite:///{database}"
    half_made = threading.Event()

    def create_store() -> None:  # what open_client does in another worker, caught between two tables
        with _store_lock(database, fcntl.LOCK_EX):
            with contextlib.closing(sqlite3.connect(database)) as connection:
                connection.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY)")
                connection.commit()
                half_made.set()
                time.sleep(0.5)  # the checker, if it does not wait, reads a store with one table now
                connection.execute("DROP TABLE experiments")
                connection.commit()
            MlflowClient(uri).search_experiments(max_results=1)

    creator = threading.Thread(target=create_store)
    creator.start()
    half_made.wait(timeout=30)
    check_store(uri)  # waits for the lock, then finds MLflow's tables
    creator.join()
    with contextlib.closing(sqlite3.connect(database)) as plain:
        tables = {row[0] for row in plain.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"experiments", "runs"} <= tables


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://lab:s3cret@db.lab:5432/mlflow", "postgresql://lab:***@db.lab:5432/mlflow"),
        ("http://lab:s3cret@10.0.0.1:5000", "http://lab:***@10.0.0.1:5000"),
        ("sqlite:////data/mlruns/mlflow.db", "sqlite:////data/mlruns/mlflow.db"),
        ("http://127.0.0.1:5000?x=%20y", "http://127.0.0.1:5000?x=%20y"),  # no password: exactly as given
        ("databricks", "databricks"),
    ],
)
def test_a_printed_store_url_hides_its_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_every_run_reads_every_page(tmp_path) -> None:
    """One search returns one page: a report of an experiment with more runs than a page left the rest out."""
    client = MlflowClient(tracking_uri_for(tmp_path))
    experiment = client.create_experiment("many", artifact_location=str(tmp_path / "artifacts"))
    made = set()
    for _ in range(5):
        run = client.create_run(experiment)
        client.set_terminated(run.info.run_id, "FINISHED")
        made.add(run.info.run_id)
    found = every_run(client, [experiment], "attributes.status = 'FINISHED'", page_size=2)
    assert len(found) == 5 and {r.info.run_id for r in found} == made


def test_a_folder_is_refused_as_mlflow_3_refuses_it_and_databricks_is_no_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "mlruns" / "mlflow.db").touch()  # explab's store folder, given as a folder
    with pytest.raises(
        TrackingStoreError, match=re.escape(f"set MLFLOW_TRACKING_URI=sqlite:///{tmp_path}/mlruns/mlflow.db")
    ):
        check_store("./mlruns")
    with pytest.raises(
        TrackingStoreError, match=re.escape(f"Set MLFLOW_TRACKING_URI=sqlite:///{tmp_path}/new/mlflow.db")
    ):
        check_store(f"file://{tmp_path}/new")
    check_store("databricks")  # MLflow's name for a Databricks workspace: nothing here to check


def test_a_store_on_a_read_only_share_says_how_to_read_it_and_the_copy_reads(tmp_path, read_only) -> None:
    """SQLite writes a WAL store's shared-memory index beside it even to read it; MLflow's own client failed
    with "unable to open database file", explab's reports with a traceback on its lock file."""
    client = open_client(tracking_uri_for(tmp_path / "results" / "mlruns"))
    client.create_run(client.create_experiment("shared"))
    client._tracking_client.store.engine.dispose()  # the store as its owner left it: closed
    share = read_only(tmp_path / "results")
    with pytest.raises(TrackingStoreError) as refused:
        open_client(tracking_uri_for(share / "mlruns"))
    copy_command = re.search(
        r"\(cp -r (\S+) \$HOME/store-copy, then paths.mlruns_dir=\$HOME/store-copy\)", str(refused.value)
    )
    assert "is in a folder on a read-only file system" in str(refused.value) and copy_command, refused.value
    shutil.copytree(copy_command.group(1), tmp_path / "store-copy")
    copied = open_client(tracking_uri_for(tmp_path / "store-copy"))
    assert len(copied.search_runs([copied.get_experiment_by_name("shared").experiment_id])) == 1

    report = run_cli("explab-report", "experiment_name=shared", f"paths.mlruns_dir={share}/mlruns", cwd=tmp_path)
    assert report.returncode == 1 and "Traceback" not in report.stderr, report.stderr[-2000:]
    assert "is in a folder on a read-only file system" in report.stderr

    with pytest.raises(TrackingStoreError, match=rf"cannot be created: {share} is on a read-only file system"):
        open_client(tracking_uri_for(share / "new" / "mlruns"))


@pytest.mark.slow
def test_a_colleagues_store_in_a_shared_folder_is_reported_and_refused_for_recording_in_one_line(
    tmp_path, another_account
) -> None:
    """A colleague's store in a shared folder, its files made with their umask (022): explab's lock file
    failed in a traceback for every command, and past it MLflow's "attempt to write a readonly database"
    (for explab-eval once it had tested the run)."""
    shared = tmp_path / "shared"
    trained = run_cli("explab-train", "trainer.max_epochs=1", f"paths.mlruns_dir={shared}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    # the colleague's: theirs, readable by all, writable by them alone, in a folder everyone may write
    subprocess.run(["chown", "-R", "nobody", str(shared)], check=True)
    subprocess.run(["chmod", "-R", "go-w", str(shared)], check=True)
    shared.chmod(0o1777)
    store = [f"paths.mlruns_dir={shared}", f"paths.log_dir={tmp_path}/mine"]

    report = run_cli("explab-report", "experiment_name=digits_cnn", *store, cwd=tmp_path, account=another_account)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "| all | 1 | " in report.stdout, report.stdout[-2000:]
    refusal = (
        rf"The MLflow store sqlite:///{shared}/mlflow.db can be read but not recorded into by this account: "
        rf"mlflow.db, .*artifacts/.* in {shared} belong to nobody and are not writable by it. To share the store, its "
        rf"owner lets the group write it \(chmod -R g\+w {shared}, and records with umask 002\); or record into "
        "another store: paths.mlruns_dir=FOLDER or MLFLOW_TRACKING_URI"
    )
    said = report.stdout + report.stderr
    assert re.search(f"the report is not logged in MLflow: {refusal}", said), said[-2000:]

    [run] = runs_in(shared, "digits_cnn")
    tested = run_cli("explab-eval", f"run_id={run.info.run_id}", *store, cwd=tmp_path, account=another_account)
    said = tested.stdout + tested.stderr
    assert tested.returncode == 0 and "test/acc" in said, said[-2000:]
    assert re.search(f"the metrics are not logged to MLflow run {run.info.run_id}: {refusal}", said), said[-2000:]

    train = run_cli("explab-train", "trainer.max_epochs=1", *store, cwd=tmp_path, account=another_account)
    assert train.returncode == 1 and "Traceback" not in train.stderr, train.stderr[-2000:]
    assert re.search(f"Error: {refusal}", train.stderr), train.stderr[-2000:]
    sweep = ["-m", "hparams_search=digits_optuna", "hydra.sweeper.n_trials=2"]
    swept = run_cli("explab-train", *sweep, *store, cwd=tmp_path, account=another_account)
    assert swept.returncode == 1 and re.search(f"Error: {refusal}", swept.stderr), swept.stderr[-2000:]
    assert not (shared / "optuna").exists(), "refused before its study was made"
    [run] = runs_in(shared, "digits_cnn")
    assert run.info.status == "FINISHED", "the colleague's run alone, untouched"


def test_an_account_this_machine_has_no_name_for_is_named_by_its_uid() -> None:
    """A file server's account (NFS, a container's mount) may have no name here: the refusal failed with
    pwd's KeyError instead of naming the files."""
    from explab.tracking.store import _account_name

    unnamed = next(uid for uid in range(4242, 5242) if not _has_name(uid))
    assert _account_name(unnamed) == f"uid {unnamed}"
    assert _account_name(os.getuid()) != f"uid {os.getuid()}"


def _has_name(uid: int) -> bool:
    import pwd

    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True
