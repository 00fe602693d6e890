"""Which worker holds a RUNNING trial, and whether it is still there to finish it.

A worker marks each trial it runs with itself (``host:pid``) and, while the trial's job runs, a heartbeat
every ``seconds``. On its own host a worker's death is seen at once (its pid is gone); on another host it
is inferred when the heartbeat is four beats late. A worker stopped by its scheduler marks its trial
released, so the next worker continues it without waiting.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from explab.tracking.orphans import process_alive
from explab.utils.logging import get_logger

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial, Trial

log = get_logger(__name__)

WORKER_ATTR = "explab.worker"
HEARTBEAT_ATTR = "explab.heartbeat"
RELEASED_ATTR = "explab.released"
MISSED_BEATS = 4


@contextlib.contextmanager
def heartbeat(trial: Trial, seconds: float) -> Iterator[None]:
    """Beat on ``trial`` every ``seconds`` while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            except Exception as error:  # a storage hiccup costs one beat, never the trial
                log.debug("heartbeat of trial %d not written: %s", trial.number, error)
            if stop.wait(seconds):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def worker_gone(trial: FrozenTrial, seconds: float) -> bool:
    """Whether nobody is running ``trial`` (RUNNING in the study) any more."""
    if trial.user_attrs.get(RELEASED_ATTR) is True:
        return True
    host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not process_alive(int(pid))
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    last_beat = float(trial.user_attrs.get(HEARTBEAT_ATTR, started))
    return time.time() - last_beat > MISSED_BEATS * seconds
