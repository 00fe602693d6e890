"""Open an MLflow tracking store once per process, safely when several processes start on a new store."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

SQLITE_PREFIX = "sqlite:///"


@functools.cache
def open_client(tracking_uri: str) -> MlflowClient:
    """An ``MlflowClient`` whose store exists and is migrated.

    Two sweep workers that start on a fresh SQLite store would both run MLflow's schema migrations and one
    would crash; an exclusive lock beside the database lets the first create it and the second find it.
    The database is switched to write-ahead logging (a setting kept in the file): a commit costs one sync
    instead of several, and readers (the UI, other workers) never block a training run's writes.
    """
    from mlflow.tracking import MlflowClient

    if not tracking_uri.startswith(SQLITE_PREFIX):
        return MlflowClient(tracking_uri)
    database = Path(tracking_uri.removeprefix(SQLITE_PREFIX))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.parent / f".{database.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = MlflowClient(tracking_uri)
            client.search_experiments(max_results=1)
            with contextlib.closing(sqlite3.connect(database)) as db:
                db.execute("PRAGMA journal_mode=WAL")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return client
