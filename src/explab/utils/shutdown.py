"""A console script's exit without the interpreter's last collections over every imported object.

At exit CPython clears each module and runs its cycle collector over what is left: with torch, Lightning,
MLflow and Optuna imported, over half a million objects, more than once, which can take longer than a
short command's own work. ``finish_before_teardown`` does in one pass what explab relies on those
collections for, then freezes every object so the teardown skips them:

- garbage already unreachable is collected, so its finalisers run (temporary files removed, say);
- SQLite connections still open are closed, which moves a store's write-ahead log back into the database
  file and removes the ``-wal`` and ``-shm`` files beside it;
- files still open for writing are flushed.

What is still reachable then is left for the operating system to reclaim as the process ends.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import sqlite3

_WRITERS = (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom)


def finish_before_teardown() -> None:
    """Collect the garbage, close SQLite connections, flush open files, and freeze every object left."""
    gc.collect()
    for thing in gc.get_objects():
        kind = type(thing)  # not isinstance: a few modules' objects warn when their __class__ is read
        if issubclass(kind, sqlite3.Connection):
            with contextlib.suppress(sqlite3.Error):
                thing.close()
        elif issubclass(kind, _WRITERS):
            with contextlib.suppress(OSError, ValueError):  # ValueError: closed, or its buffer detached
                thing.flush()
    gc.freeze()


def finish_at_exit() -> None:
    """Run ``finish_before_teardown`` once as this process exits, after the ``atexit`` handlers registered
    later than this call (the libraries a command imports as it runs: MLflow ends its active run there)."""
    atexit.unregister(finish_before_teardown)
    atexit.register(finish_before_teardown)
