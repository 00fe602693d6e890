"""What ``model.compile=true`` leaves in a process: dropped once the run ends, for the next run there.

torch.compile keeps the code it compiled for a function (the backbone's ``forward``) for the life of the
process and compiles it again for each new set of shapes, up to ``torch._dynamo.config.recompile_limit``
(8 versions); past it the function runs uncompiled, with one warning. One run compiles several versions
(training and validation, each again for a smaller last batch), and a sweep's trials run one after another in
one process, each with its own widths and depths: after two or three architectures every later trial
trained uncompiled, so a configuration's numbers and ``perf/`` metrics depended on its place in the sweep.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def compiled_for_this_run(compiles: bool) -> Iterator[None]:
    """Inside, a run that ``compiles`` its model; after it, however it ended, torch.compile's code caches are
    emptied (``torch._dynamo.reset``), so the next run in this process compiles as the first did."""
    try:
        yield
    finally:
        if compiles:
            import torch._dynamo

            torch._dynamo.reset()
