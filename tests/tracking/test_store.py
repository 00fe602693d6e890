"""The SQLite store's connection settings."""

from __future__ import annotations

import contextlib
import sqlite3

import sqlalchemy

from explab.tracking.store import open_client


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
