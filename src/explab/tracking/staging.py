"""Files staged in this process's temporary folder on their way into or out of the MLflow store (a run's
config files and model, a sweep's summary, a model loaded to predict), named with that folder when it has
no room for them.

A near-full temporary folder is common where it is small: a node-local ``/tmp``, a container's. The weights
of a large model then fail to be written there after the whole fit, with torch's "unexpected pos 64 vs 0".
(Python picks a temporary folder that can take a tiny file, so only one with some room left gets this far.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator

from explab.errors import NO_ROOM, ExplabError, no_room_behind, raised_in, raised_while
from explab.tracking.full_store import MLFLOW_STORE_CODE


class StagingError(ExplabError):
    """The temporary folder had no room (``reason``) for ``what``, staged in it; ``outcome`` says what became
    of the run that staged it, where there was one."""

    def __init__(self, what: str, reason: str, outcome: str = "") -> None:
        self.what, self.reason, self.outcome = what, reason, outcome
        told = f": {outcome}" if outcome else ""
        super().__init__(
            f"{what} could not be staged in the temporary folder {tempfile.gettempdir()} ({reason}){told}. Free "
            "space there, or give the command a temporary folder with room: TMPDIR=FOLDER"
        )

    def of_run(self, outcome: str) -> StagingError:
        """This error, saying what became of the run (``TrackedRun.stopped_for_room``)."""
        return StagingError(self.what, self.reason, outcome)


def staging_out_of_room(error: BaseException) -> str | None:
    """Why a write found no room, for one made outside MLflow's store code (a write into the store itself is
    the store's to name, ``full_store.store_out_of_room``); None for any other error."""
    if isinstance(error, ExplabError) or raised_in(error, MLFLOW_STORE_CODE):
        return None
    return no_room_behind(error)


@contextlib.contextmanager
def room_to_stage(what: str) -> Iterator[None]:
    """Inside, a write that finds no room outside the store raises ``StagingError`` naming ``what`` and the
    temporary folder; only files staged in that folder may be written inside."""
    try:
        yield
    except Exception as error:
        reason = staging_out_of_room(error)
        if reason is None:
            raise
        raise StagingError(what, reason) from error


@contextlib.contextmanager
def room_to_download(what: str) -> Iterator[None]:
    """``room_to_stage`` for files copied out of the store into the temporary folder, where the copying is
    done by the store's own code, and MLflow tells the reason only in a message or a DEBUG record."""
    with _download_failures() as swallowed:
        try:
            yield
        except Exception as error:
            if isinstance(error, ExplabError):
                raise
            reason = next(filter(None, map(_no_room_told, [error, *swallowed])), None)
            if reason is None:
                raise
            raise StagingError(what, reason) from error


def _no_room_told(error: BaseException) -> str | None:
    """``no_room_behind``, or the reason an error's message tells: MLflow's downloads gather the errors of
    the files they copy into one message ("[Errno 28] No space left on device: ..."), chained to none."""
    reason = no_room_behind(error)
    if reason is not None:
        return reason
    told = (int(number) for seen in raised_while(error) for number in re.findall(r"\[Errno (\d+)\]", str(seen)))
    return next((os.strerror(number) for number in told if number in NO_ROOM), None)


class _KeepDownloadFailures(logging.Filter):
    def __init__(self, drop: bool) -> None:
        super().__init__()
        self.kept: list[BaseException] = []
        self.drop = drop  # DEBUG records the logger's own level would have dropped

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            return True
        if record.exc_info and record.exc_info[1]:
            self.kept.append(record.exc_info[1])
        return not self.drop


@contextlib.contextmanager
def _download_failures() -> Iterator[list[BaseException]]:
    """The errors MLflow's ``runs:/`` downloads meet inside, which it logs at DEBUG only: it then raises
    "Failed to download artifacts from path 'model', please ensure that the path is correct", which is
    wrong when the model is there and the temporary folder had no room for its copy."""
    logger = logging.getLogger("mlflow.store.artifact.runs_artifact_repo")
    keep, level = _KeepDownloadFailures(drop=not logger.isEnabledFor(logging.DEBUG)), logger.level
    logger.addFilter(keep)
    logger.setLevel(logging.DEBUG)
    try:
        yield keep.kept
    finally:
        logger.setLevel(level)
        logger.removeFilter(keep)
