"""Optuna's journal file with whole records only, so a full disk never leaves a study unreadable.

Optuna appends each batch of records as JSON lines. An append that runs out of room (a full disk, a
quota) leaves its first bytes behind without a line end; the next append, once there is room, continues
that line, and Optuna then reads both records as one line of bad JSON and fails on every later read: the
sweep could not go on, nor be reported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file

from explab.utils.logging import get_logger

log = get_logger(__name__)

_TAIL_CHUNK = 1 << 16


class WholeRecordsJournal(JournalFileBackend):
    """``JournalFileBackend`` whose failed appends are cut back off, and whose torn tail (left by a version
    that did not, or by a kill during a write) is cut off as the journal opens; both under the journal's own
    lock, which every append takes."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        path = Path(file_path)
        # a journal this account may only read (a colleague's study in a shared folder) is read as it is: the
        # lock is a file made beside it, and reading needs none; appends fail, and a sweep into the
        # colleague's store is refused before its study opens (``tracking.store.check_recordable``)
        if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK):
            with get_lock_file(self._lock):
                _cut_torn_tail(path)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        import json

        records = "\n".join(json.dumps(entry, separators=(",", ":")) for entry in logs) + "\n"
        with get_lock_file(self._lock):
            whole = os.path.getsize(self._file_path)
            try:
                with open(self._file_path, "ab") as journal:
                    journal.write(records.encode("utf-8"))
                    journal.flush()
                    os.fsync(journal.fileno())
            except BaseException:
                os.truncate(self._file_path, whole)  # shrinking a file needs no room
                raise


def _cut_torn_tail(path: Path) -> None:
    """Cut ``path`` back to its last line end, when it does not end with one."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb") as journal:
        end = size
        while end > 0:
            start = max(0, end - _TAIL_CHUNK)
            journal.seek(start)
            chunk = journal.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return
            line_end = chunk.rfind(b"\n")
            if line_end >= 0:
                whole = start + line_end + 1
                break
            end = start
        else:
            whole = 0
    os.truncate(path, whole)
    log.warning(
        "the study journal %s ended in a record cut short (a full disk, or a kill during a write): its %d bytes "
        "were removed, every complete record is kept",
        path,
        size - whole,
    )
