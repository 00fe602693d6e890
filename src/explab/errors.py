"""The errors a user can fix: their message names the problem and the fix, and is all a user needs to see."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator


class ExplabError(Exception):
    """A mistake in a config, a file, a store or a command, as opposed to a bug.

    The console scripts print its message without a traceback (``HYDRA_FULL_ERROR=1`` shows one) and exit
    with status 1; inside a sweep it fails the trial like any other error.
    """


class UsageError(ExplabError, ValueError):
    """A command asked for something it cannot do as given (a run that cannot be resumed, unreadable input)."""


class Stopped(ExplabError):
    """The job was stopped on purpose, not broken (its trial was ended elsewhere): its run ends KILLED with the
    message as its reason and no traceback."""


class ConfigError(ExplabError, ValueError):
    """A config value of the wrong type or out of range, found before any run exists."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(
            f"{key}={value!r} is not valid: {key} must be {allowed}. "
            f"Change {key} on the command line or in the experiment's YAML."
        )
        self.key, self.value, self.allowed = key, value, allowed


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none): a third-party error quoted
    inside one of explab's, without the rest of its text and without a closing full stop, as a clause."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")


def first_sentence(error: BaseException) -> str:
    """:func:`first_line` up to its first full stop: torch's errors of an unreadable file go on, in the same
    line, with paragraphs of advice on checkpoints that would only bury the reason."""
    return first_line(error).split(". ")[0]


def raised_while(error: BaseException) -> Iterator[BaseException]:
    """``error``, then the error it was raised from or while handling, and so on: what a library's own error
    may hide (an OSError behind torch's zip writer, a SIGTERM behind Hydra's failing cleanup). Each error
    once: ``raise error from error`` makes a chain loop back to where it began."""
    seen: BaseException | None = error
    met: set[int] = set()
    while seen is not None and id(seen) not in met:
        met.add(id(seen))
        yield seen
        seen = seen.__cause__ or seen.__context__


def without_frames(error: BaseException) -> BaseException:
    """``error`` with its traceback dropped, and those of the errors it was raised from or while handling.

    A traceback keeps every frame it passed through alive, with their locals: an error kept after it was
    handled (a sweep's failed or pruned trial) would keep that trial's model, optimiser state and data with it.
    """
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        chained = pending.pop()
        if chained is None or id(chained) in seen:
            continue
        seen.add(id(chained))
        chained.__traceback__ = None
        pending += [chained.__cause__, chained.__context__]
    return error


def raised_in(error: BaseException, source: str) -> bool:
    """Whether ``error``, or an error it was raised while, passed through a source file whose path holds
    ``source`` (``"/mlflow/store/"``): whose code a failure came from, when its type does not say."""
    import traceback

    return any(
        source in frame.f_code.co_filename
        for seen in raised_while(error)
        for frame, _ in traceback.walk_tb(seen.__traceback__)
    )


# what a full disk, a quota, or a limit on file size raise as a file is written
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def no_room_behind(error: BaseException) -> str | None:
    """Why a write failed when ``error`` is, or was raised while, one that found no room: the OS's reason for
    an ``OSError`` (``NO_ROOM``: "No space left on device", "Disk quota exceeded"), or SQLite's "database or
    disk is full" or its write I/O error for a database that could not grow; None for any other error.
    torch's zip writer reports the OSError as "unexpected pos 306816 vs 306704", MLflow's store a full SQLite
    file as an ``MlflowException`` raised from SQLAlchemy's, raised from SQLite's."""
    import sqlite3

    for seen in raised_while(error):
        if isinstance(seen, OSError) and seen.errno in NO_ROOM:
            return seen.strerror or os.strerror(seen.errno)
        if isinstance(seen, sqlite3.Error) and seen.sqlite_errorcode == sqlite3.SQLITE_FULL:
            return "database or disk is full"
        if isinstance(seen, sqlite3.Error) and seen.sqlite_errorcode == sqlite3.SQLITE_IOERR_WRITE:
            # SQLite reports only ENOSPC as full: a quota (EDQUOT) or a file size limit comes as an I/O error
            return "disk I/O error as SQLite wrote, which a quota or a file size limit gives"
        if isinstance(seen, sqlite3.Error) and seen.sqlite_errorcode == sqlite3.SQLITE_IOERR_SHMSIZE:
            # opening a WAL database sizes its shared-memory file beside it, which a full disk refuses
            return "disk I/O error as SQLite sized its shared-memory file, which a full disk gives"
    return None


def counted(number: int, noun: str) -> str:
    """``number`` and ``noun``, plural unless it is one: "1 epoch", "3 epochs"."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
