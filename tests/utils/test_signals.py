"""Critical sections that neither Ctrl-C nor SIGTERM may cut in half."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from explab.utils.signals import Terminated, interrupts_deferred, sigterm_raises_terminated


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Python's own SIGINT handler, as in a terminal: a suite started in the background has SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_inside_a_deferred_block_is_raised_after_the_block() -> None:
    finished = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        finished.append("rest of the block")
    assert finished == ["rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupts_deferred():  # no signal: nothing raised
        pass


def test_sigterm_inside_a_deferred_block_is_raised_after_the_block() -> None:
    """In a sweep SIGTERM raises Terminated; between asking a trial and holding it, it must wait, or the
    trial stays RUNNING in the study with nobody left to fail it."""
    finished = []
    with pytest.raises(Terminated) as stopped, sigterm_raises_terminated(), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        finished.append("rest of the block")
    assert finished == ["rest of the block"] and stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
