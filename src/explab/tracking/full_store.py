"""A tracking store that ran out of room (its disk full, a quota reached), named in one line with what became
of the run, instead of MLflow's traceback from SQLite's "database or disk is full"."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from explab.errors import ExplabError, no_room_behind, raised_in, raised_while
from explab.tracking.store import SQLITE_PREFIX, TrackingStoreError, shown_url

MLFLOW_STORE_CODE = f"{os.sep}mlflow{os.sep}store{os.sep}"  # MLflow's tracking and artifact stores


def store_out_of_room(error: BaseException) -> str | None:
    """Why MLflow's store could not take a write, when ``error`` is one that found no room (its database or
    an artifact on a full disk or over a quota); None for any other error.

    Only a write made by MLflow's store code counts: a checkpoint's own full disk is already named by the
    checkpoint writer (an ``ExplabError``), and a model or plot staged in a full temporary folder is not the
    store's to free.
    """
    if isinstance(error, ExplabError):
        return None
    reason = no_room_behind(error) or _server_unavailable(error)
    return reason if reason is not None and raised_in(error, MLFLOW_STORE_CODE) else None


def _server_unavailable(error: BaseException) -> str | None:
    """Why a tracking server took no write, when it answered every retry of one with 503 Service Unavailable:
    MLflow's server answers so when its database refuses a write ("database or disk is full", PostgreSQL's
    "could not extend file"), which its log names; the client says only "too many 503 error responses"."""
    from requests.exceptions import RetryError

    for seen in raised_while(error):
        if isinstance(seen, RetryError) and "too many 503 error responses" in str(seen):
            return (
                "it answered 503 Service Unavailable to every retry, as it does when its own database cannot "
                "take a write: a full disk, most often"
            )
    return None


def out_of_room(tracking_uri: str, reason: str, outcome: str) -> TrackingStoreError:
    """The error that says the store at ``tracking_uri`` has no room (``reason``), what became of the run
    (``outcome``), and the two ways on."""
    disk = "the disk (or raise your quota there)"
    if tracking_uri.startswith(SQLITE_PREFIX):
        disk = f"the disk of {Path(tracking_uri.removeprefix(SQLITE_PREFIX)).parent} (or raise your quota there)"
    elif tracking_uri.startswith(("http://", "https://")):
        disk = "the server's disk, once its log has confirmed the error"
    return TrackingStoreError(
        f"The MLflow store {shown_url(tracking_uri)} could not take a write ({reason}): {outcome}. Free space on "
        f"{disk}, or record into another store: paths.mlruns_dir=FOLDER or MLFLOW_TRACKING_URI"
    )


@contextlib.contextmanager
def room_for(tracking_uri: str, outcome: str) -> Iterator[None]:
    """Inside, a write the store has no room for raises ``out_of_room`` with ``outcome``."""
    try:
        yield
    except Exception as error:
        reason = store_out_of_room(error)
        if reason is None:
            raise
        raise out_of_room(tracking_uri, reason, outcome) from error


class _DropNoRoomTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[1] and no_room_behind(record.exc_info[1]))


_DROP_NO_ROOM_TRACEBACKS = _DropNoRoomTracebacks()


def quiet_mlflow_about_room() -> None:
    """MLflow's SQL store logs a traceback at ERROR for each write a full database refuses, before raising
    the error it logged; ``out_of_room`` names the store once instead, so those records are dropped. Calling
    it again changes nothing."""
    logging.getLogger("mlflow.store.db.utils").addFilter(_DROP_NO_ROOM_TRACEBACKS)
