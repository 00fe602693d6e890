"""A SQLite store moved with its artifacts: its records point to its own ``artifacts/`` again.

MLflow records where each experiment, run and logged model keeps its artifacts as an absolute ``file://``
URI; it has no relative ones. A store moved with its folder (a renamed project, ``rsync`` to a cluster's
scratch space) goes on naming the folder it left: ``explab-eval`` and ``explab-predict`` fail to download
what it holds, ``reproduce=`` finds no config, the UI shows no artifacts, and new runs write theirs back
into the old folder, re-created for them. Nor does MLflow offer a way to change where a record points.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from explab.errors import counted
from explab.utils.logging import get_logger

log = get_logger(__name__)

# the columns that hold artifact locations (MLflow 3's schema), with what a row is; params and tags keep what
# the run recorded
_LOCATIONS = {
    "experiments": ("artifact_location", "experiment"),
    "runs": ("artifact_uri", "run"),
    "logged_models": ("artifact_location", "logged model"),
    "model_versions": ("storage_location", "model version"),
}


def follow_moved_artifacts(database: Path) -> None:
    """Point the records of the store ``database`` that name an artifacts folder that is gone to the store's
    own ``artifacts/``, where the artifacts came along: it holds the run folders those records name. An
    experiment placed elsewhere on purpose (its folder is there), a copy whose original is still in place,
    and a store this account may only read are left alone. Call it under the store's lock."""
    artifacts = database.parent / "artifacts"
    if not (database.is_file() and artifacts.is_dir() and os.access(database, os.W_OK)):
        return
    here = artifacts.resolve().as_uri()
    # closing() closes the connection; the connection's own block commits the updates, or rolls them back;
    # runs of other processes may hold the write lock for a moment: wait for it rather than fail the command
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection, connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables or "runs" not in tables:
            return  # not yet an MLflow store: MLflow makes it
        moved = {
            old
            for experiment_id, old in connection.execute("SELECT experiment_id, artifact_location FROM experiments")
            if old.startswith("file://")
            and old != here
            and not _local_path(old).exists()  # moved, not copied: a copy's original keeps its own records
            and _came_along(connection, experiment_id, old, artifacts)
        }
        for old in sorted(moved):
            counts = [
                counted(
                    connection.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                        (here, len(old) + 1, old, len(old) + 1, f"{old}/"),
                    ).rowcount,
                    noun,
                )
                for table, (column, noun) in _LOCATIONS.items()
                if table in tables
            ]
            log.warning(
                "the MLflow store %s was moved from %s: its records now point to the artifacts beside it, in %s (%s)",
                database,
                _local_path(old),
                artifacts,
                ", ".join(counts),
            )


def _came_along(connection: sqlite3.Connection, experiment_id: int, old: str, artifacts: Path) -> bool:
    """Whether a run of the experiment recorded under ``old`` has its artifacts folder in ``artifacts``."""
    found = connection.execute(
        "SELECT run_uuid FROM runs WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ? LIMIT 20",
        (experiment_id, len(old) + 1, f"{old}/"),
    ).fetchall()
    return any((artifacts / run_id).is_dir() for (run_id,) in found)


def _local_path(uri: str) -> Path:
    """The folder a ``file://`` URI names (``Path.as_uri`` escapes spaces and other characters)."""
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(uri).path))


def missing_artifacts(run_id: str, artifact_uri: str) -> str | None:
    """Why run ``run_id`` holds no artifacts, when its ``file://`` folder is gone (moved or removed without
    the store, or a store copied without its ``artifacts/``); None when the folder is there, or the
    artifacts live elsewhere than this machine's files."""
    if not artifact_uri.startswith("file://") or _local_path(artifact_uri).exists():
        return None
    return (
        f"run {run_id}'s artifacts are not where its store records them: {_local_path(artifact_uri)} is gone "
        "(moved or removed apart from the store, or the store was copied without its artifacts/ folder). Put "
        "them back there, or move them beside the store, in its artifacts/ folder"
    )
