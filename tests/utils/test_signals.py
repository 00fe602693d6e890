"""Critical sections that a Ctrl-C must not cut in half."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from explab.utils.signals import interrupts_deferred


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
