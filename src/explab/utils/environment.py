"""Environment variables changed for the length of a block only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def variables_restored(*names: str) -> Iterator[None]:
    """Whatever the block does to these variables (set, change, remove) is undone when it ends."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
