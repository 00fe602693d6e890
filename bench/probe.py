"""Callbacks the start-up and exit benchmarks add to a real ``explab-train`` process (``PYTHONPATH=bench``)."""

from __future__ import annotations

import atexit
import os
import time

import lightning as L

from explab.utils.shutdown import finish_before_teardown


class ExitAtFirstStep(L.Callback):
    """Ends the process the moment the first training batch starts: its wall time is start-up."""

    def on_train_batch_start(self, *args: object) -> None:
        os._exit(0)


class StampExitStart(L.Callback):
    """Writes the clock to ``$EXPLAB_BENCH_STAMP`` as the process starts to exit, its work done: the first
    ``atexit`` handler, since it is registered last. ``EXPLAB_BENCH_TEARDOWN=interpreter`` leaves the exit to
    the interpreter's own teardown, without explab's ``finish_before_teardown``."""

    def on_test_end(self, *args: object) -> None:
        atexit.register(self._stamp)
        if os.environ.get("EXPLAB_BENCH_TEARDOWN") == "interpreter":
            atexit.unregister(finish_before_teardown)

    @staticmethod
    def _stamp() -> None:
        with open(os.environ["EXPLAB_BENCH_STAMP"], "w") as stamp:
            stamp.write(repr(time.time()))
