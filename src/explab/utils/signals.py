"""Signals as exceptions: SIGTERM ends a run or a sweep the way Ctrl-C does, and short critical sections
that a Ctrl-C must not cut in half."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """A SIGINT during the block is raised as KeyboardInterrupt only once the block is done.

    Used where a half-done step would leave shared state inconsistent, e.g. a trial created in the study
    but not yet known to the code that would mark it FAIL. Outside the main thread signals cannot be
    caught, so the block runs unprotected there.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous == signal.SIG_IGN:
        yield
        return
    received: list[Any] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if not received:
        return
    if callable(previous):  # Python's default handler raises KeyboardInterrupt here
        previous(signal.SIGINT, received[0])
    else:  # SIG_DFL: die of the signal as the process would have
        os.kill(os.getpid(), signal.SIGINT)


class Terminated(SystemExit):
    """SIGTERM arrived: leave the way Ctrl-C does, with the shell's 128 + 15 exit code."""


@contextmanager
def sigterm_raises_terminated() -> Iterator[None]:
    """Within the block, SIGTERM (a scheduler's stop, ``kill``) raises ``Terminated``, so ``finally`` and
    ``except`` clauses close what is open instead of the process dying with it; outside the main thread
    signals cannot be caught, and the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
