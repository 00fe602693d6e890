"""Critical sections that neither Ctrl-C nor SIGTERM may cut in half."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from explab.utils.signals import Terminated, held, interrupts_deferred, stop_behind, stop_signals_raise_terminated


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
    with pytest.raises(Terminated) as stopped, stop_signals_raise_terminated(), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        finished.append("rest of the block")
    assert finished == ["rest of the block"] and stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _ended_as(ended: list, stop: signal.Signals | None = None) -> tuple:
    """A ``take`` that a signal interrupts just after the thing exists, and an ``end`` that records its call."""

    def take() -> str:
        if stop is not None:
            os.kill(os.getpid(), stop)
        return "run 7"

    return take, lambda thing, error: ended.append((thing, type(error)))


@pytest.mark.usefixtures("ctrl_c_raises")
@pytest.mark.parametrize(("stop", "raised"), [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_stop_while_a_thing_is_taken_ends_it_and_skips_the_block(stop: signal.Signals, raised: type) -> None:
    """The moment that lost runs, trials and parent runs: the store has made the thing, ``take`` not yet
    returned it. The stop waits for ``take``, then is raised in the block, before any of it runs."""
    ended: list = []
    body = []
    with pytest.raises(raised), stop_signals_raise_terminated(), held(*_ended_as(ended, stop)) as thing:
        body.append(thing)
    assert ended == [("run 7", raised)] and body == []


def test_a_held_thing_is_ended_with_what_left_the_block() -> None:
    ended: list = []
    with held(*_ended_as(ended)) as thing:
        assert thing == "run 7"
    with pytest.raises(ValueError), held(*_ended_as(ended)):
        raise ValueError("broken batch")
    assert ended == [("run 7", type(None)), ("run 7", ValueError)]


def test_nothing_is_ended_when_taking_fails() -> None:
    ended: list = []

    def take() -> str:
        raise ConnectionError("store unreachable")

    with pytest.raises(ConnectionError), held(take, lambda thing, error: ended.append(thing)):
        pytest.fail("the block ran without the thing")
    assert ended == []


def test_a_stop_a_librarys_failing_cleanup_replaced_is_found_behind_its_error() -> None:
    """A SIGTERM inside Hydra's job setup left its config half-made; its cleanup then raised an AttributeError
    in place of the stop, and the sweep took that for a failed trial and went on."""
    try:
        try:
            raise Terminated(143)
        finally:
            None._invalidate_flags_cache()  # type: ignore[attr-defined]  # the cleanup's own failure
    except AttributeError as error:
        replaced = error
    found = stop_behind(replaced)
    assert isinstance(found, Terminated) and found.code == 143
    assert stop_behind(ValueError("a plain failure")) is None


def _fsspec_exists_when_signalled(path: Path, stop: signal.Signals | None) -> bool:
    """fsspec's own ``exists`` of ``path``, with ``stop`` sent from inside it."""
    from fsspec.implementations.local import LocalFileSystem

    info = LocalFileSystem.info

    def signalled_info(fs: LocalFileSystem, path: str, **kwargs: object) -> dict:
        if stop is not None:
            os.kill(os.getpid(), stop)
        return info(fs, path, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LocalFileSystem, "info", signalled_info)
        return LocalFileSystem().exists(str(path))


def _load(exists: bool, path: Path) -> None:
    if not exists:  # as Lightning's checkpoint loader answers it
        raise FileNotFoundError(f"Checkpoint file not found: {path}")


def test_a_stop_a_library_swallowed_ends_what_is_held_as_the_stop_with_its_error_as_cause(tmp_path: Path) -> None:
    """A terminal hung up while Lightning looked for the best checkpoint: fsspec's ``exists`` swallowed the
    stop and answered False, the load failed for a file that was there, and the run ended FAILED, exit 1."""
    checkpoint = tmp_path / "epoch_009.ckpt"
    checkpoint.write_bytes(b"weights")
    ended: list = []
    with (
        pytest.raises(Terminated) as stopped,
        stop_signals_raise_terminated() as stops,
        held(*_ended_as(ended)),
        stops.not_swallowed(),
    ):
        _load(_fsspec_exists_when_signalled(checkpoint, signal.SIGTERM), checkpoint)
    assert stopped.value.code == 128 + signal.SIGTERM and isinstance(stopped.value.__cause__, FileNotFoundError)
    assert ended == [("run 7", Terminated)]
    with pytest.raises(FileNotFoundError), stop_signals_raise_terminated() as stops, stops.not_swallowed():
        _load(_fsspec_exists_when_signalled(tmp_path / "gone.ckpt", None), tmp_path / "gone.ckpt")
