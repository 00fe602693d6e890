"""A callback the start-up benchmark adds to a real ``explab-train`` process (``PYTHONPATH=bench``)."""

from __future__ import annotations

import os

import lightning as L


class ExitAtFirstStep(L.Callback):
    """Ends the process the moment the first training batch starts: its wall time is start-up."""

    def on_train_batch_start(self, *args: object) -> None:
        os._exit(0)
