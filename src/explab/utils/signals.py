"""Signals as exceptions: SIGTERM ends a run or a sweep the way Ctrl-C does, short critical sections that
neither Ctrl-C nor SIGTERM may cut in half, and things (a run, a trial) that are always ended once taken."""

from __future__ import annotations

import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from explab.errors import raised_while

_T = TypeVar("_T")

STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """A SIGINT, SIGTERM or SIGHUP during the block is acted on only once the block is done, by the handler
    that was in place (so Ctrl-C raises KeyboardInterrupt there, and SIGTERM inside a sweep ``Terminated``).

    Used where a half-done step would leave shared state inconsistent, e.g. a trial created in the study
    but not yet known to the code that would mark it FAIL. Outside the main thread signals cannot be
    caught, so the block runs unprotected there; a signal that is ignored stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    previous = {s: signal.getsignal(s) for s in STOPS}
    deferred = [s for s, handler in previous.items() if handler not in (signal.SIG_IGN, None)]
    for signum in deferred:
        signal.signal(signum, lambda number, frame: received.append((number, frame)))
    try:
        yield
    finally:
        for signum in deferred:
            signal.signal(signum, previous[signum])
    if not received:
        return
    first, frame = received[0]  # the first stop asked for is the one acted on
    handler = previous[signal.Signals(first)]
    if callable(handler):  # e.g. Python's default SIGINT handler raises KeyboardInterrupt here
        handler(first, frame)
    else:  # SIG_DFL: die of the signal as the process would have
        os.kill(os.getpid(), first)


@contextmanager
def held(take: Callable[[], _T], end: Callable[[_T, BaseException | None], None]) -> Iterator[_T]:
    """What ``take()`` returns (an MLflow run, an Optuna trial), ended by ``end(it, error)`` however the block
    is left: ``error`` is the exception leaving the block, None when it finished. When ``take`` itself fails,
    nothing was taken and ``end`` is not called.

    Ctrl-C and SIGTERM wait while it is taken: one landing between a store creating the thing and ``take``
    returning it would leave it in the store with nobody to end it. Once taken, a deferred signal is acted on
    inside the block, so it too reaches ``end``.
    """
    taken = False
    try:
        with interrupts_deferred():
            thing = take()
            taken = True
        yield thing
    except BaseException as error:
        if taken:
            end(thing, error)
        raise
    end(thing, None)


class Terminated(SystemExit):
    """SIGTERM arrived: leave the way Ctrl-C does, with the shell's 128 + 15 exit code."""


def stop_behind(error: BaseException) -> BaseException | None:
    """The stop (``Terminated``, ``KeyboardInterrupt``: not an ``Exception``) that ``error`` was raised while
    handling, if any. A stop that lands inside a library's own setup can leave its state half-made, and the
    library's cleanup then raises an error of its own in place of the stop (Hydra's job setup, interrupted,
    raised "'NoneType' object has no attribute '_invalidate_flags_cache'"): caught as that error, the stop
    would be lost."""
    return next((e for e in raised_while(error) if not isinstance(e, Exception)), None)


def interrupted_by_ctrl_c(error: BaseException) -> bool:
    """Whether ``error`` is how Ctrl-C ends a job: ``KeyboardInterrupt``, or the ``sys.exit(1)`` that Lightning
    raises from inside its handler of one during ``fit`` (the interrupt is then the exit's context)."""
    return isinstance(error, KeyboardInterrupt) or (
        isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt)
    )


def signal_whose_handler_raised(error: BaseException) -> signal.Signals | None:
    """The signal whose handler, as installed now, raised ``error`` (a frame of the error's traceback runs
    that handler's code); None for an error raised anywhere else.

    A handler that exits ends the process on purpose, wherever the signal landed: submitit's handler of a
    preemption (SIGUSR2) requeues the job, then calls ``sys.exit(-1)``, and the job must stop, not fail.
    """
    raised_in = {frame.f_code for frame, _ in traceback.walk_tb(error.__traceback__)}
    return next((s for s in signal.Signals if _handler_code(signal.getsignal(s)) in raised_in), None)


def _handler_code(handler: Any) -> Any:
    """The code a signal handler runs: a function's, a bound method's or a ``functools.partial``'s; None for
    ``SIG_DFL``, ``SIG_IGN`` and handlers written in C (Python's default one of SIGINT)."""
    function = getattr(handler, "func", handler)
    return getattr(getattr(function, "__func__", function), "__code__", None)


def caught_unless_ignored(signals: tuple[signal.Signals, ...]) -> list[signal.Signals]:
    """``signals`` but those this process was started ignoring: ``nohup`` ignores SIGHUP so that a command
    outlives its terminal, and it must then go on when the terminal hangs up."""
    return [s for s in signals if signal.getsignal(s) is not signal.SIG_IGN]


# a scheduler's stop or ``kill`` (SIGTERM); the terminal hanging up (SIGHUP: a dropped ssh session)
TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class StopsReceived:
    """The stop signals whose handler raised ``Terminated`` within ``stop_signals_raise_terminated``'s block."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    @contextmanager
    def not_swallowed(self) -> Iterator[None]:
        """An error leaving the block after a stop signal, with no ``Terminated`` behind it, becomes that stop.

        A library that catches everything can swallow the ``Terminated`` raised inside it and fail for want of
        what it was doing: fsspec's ``exists`` has a bare ``except`` and answers False, so a terminal hung up
        while Lightning looked for the best checkpoint to test raised "Checkpoint file not found" for a file
        that was there, and the run ended FAILED with exit code 1. The stop is what ended the block: the
        error is kept as its cause."""
        received_before = len(self.signals)
        try:
            yield
        except Exception as error:
            swallowed = self.signals[received_before:]
            if swallowed and stop_behind(error) is None:
                raise Terminated(128 + swallowed[0]) from error
            raise


@contextmanager
def stop_signals_raise_terminated() -> Iterator[StopsReceived]:
    """Within the block, SIGTERM (a scheduler's stop, ``kill``) and SIGHUP (the terminal hung up, unless the
    command was started with ``nohup``) raise ``Terminated``, so ``finally`` and ``except`` clauses close what
    is open instead of the process dying with it; outside the main thread signals cannot be caught, and the
    block runs as it is. An error a swallowed ``Terminated`` left behind leaves the block as the stop; the
    ``StopsReceived`` yielded does the same for a block nested inside, which must end what it holds as
    stopped (``StopsReceived.not_swallowed``)."""
    stops = StopsReceived()
    if threading.current_thread() is not threading.main_thread():
        yield stops
        return

    def handler(signum: int, frame: Any) -> None:
        stops.signals.append(signum)
        raise Terminated(128 + signum)

    previous = {signum: signal.signal(signum, handler) for signum in caught_unless_ignored(TERMINATING)}
    try:
        with stops.not_swallowed():
            yield stops
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
