"""A job's ``sys.exit`` is its error; an exit from a signal's handler is a stop."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from explab.utils.exits import ExitCalled, exit_is_an_error


def _requeue_then_exit(signum: int, frame: object) -> None:
    sys.exit(-1)  # submitit's handler of a preemption, once it has requeued the job


def _job_exits() -> None:
    sys.exit(-1)


def test_an_exit_from_a_signals_handler_is_a_stop_and_one_from_the_jobs_code_an_error() -> None:
    """Where the signal lands (loading data, testing) the handler runs inside the job's code: the exit it
    raises must still stop the job, not fail it."""
    before = signal.signal(signal.SIGUSR2, _requeue_then_exit)
    try:
        with pytest.raises(SystemExit) as stopped, exit_is_an_error():
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(10)  # the handler runs at once and ends the sleep
        assert type(stopped.value) is SystemExit and stopped.value.code == -1
        with (
            pytest.raises(ExitCalled, match=r"^the job's code called sys.exit\(-1\) in _job_exits"),
            exit_is_an_error(),
        ):
            _job_exits()
    finally:
        signal.signal(signal.SIGUSR2, before)
