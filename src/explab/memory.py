"""A job that runs out of memory, named with what to change instead of torch's traceback.

torch raises ``torch.OutOfMemoryError`` when a GPU's allocator (CUDA, MPS, XPU) has no room, and a plain
``RuntimeError`` from its CPU allocator ("DefaultCPUAllocator: can't allocate memory") when the host refuses
an allocation; Hydra wraps either in its own error when a model's constructor allocates. Both are a config's
size against a machine's memory, not a bug: the run ends FAILED with torch's error and traceback recorded
(``error.txt``), and the console says which sizes to lower.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from explab.errors import ExplabError, first_line, raised_while

# torch's CPU allocator, refused by the host: "... you tried to allocate 16000000000000 bytes. Error code 12"
_HOST_REFUSED = re.compile(r"DefaultCPUAllocator: can't allocate memory: you tried to allocate (\d+) bytes")
SMALLER = (
    "Lower data.batch_size or the model's size (model.backbone.*); precision=bf16-mixed halves the memory "
    "activations take"
)
SHARED_GPU = "on a shared GPU, nvidia-smi lists what else holds its memory, and CUDA_VISIBLE_DEVICES picks another"


class OutOfMemory(ExplabError):
    """An allocation the device or the host refused: the message names how much and what to lower."""


def out_of_memory(error: BaseException, lower: str = SMALLER) -> OutOfMemory | None:
    """``error`` as an ``OutOfMemory`` when it is, or was raised while, an allocation that found no memory,
    its message ending in ``lower`` (what the command's user can make smaller); None for any other error."""
    import torch

    for seen in raised_while(error):
        if isinstance(seen, torch.OutOfMemoryError):
            # torch's own words say which device, how much was asked, and what else holds its memory
            return OutOfMemory(f"out of memory: {first_line(seen)}. {lower}; {SHARED_GPU}")
        refused = _HOST_REFUSED.search(str(seen))
        if refused:
            gib = int(refused.group(1)) / 2**30
            return OutOfMemory(f"out of memory: this machine refused torch the {gib:,.1f} GiB of one tensor. {lower}")
    return None


@contextmanager
def memory_named(lower: str = SMALLER) -> Iterator[None]:
    """Inside, an allocation that finds no memory is raised as an ``OutOfMemory`` (``out_of_memory``, saying
    ``lower``), raised from torch's error so a run's record keeps its traceback."""
    try:
        yield
    except Exception as error:
        named = out_of_memory(error, lower)
        if named is None:
            raise
        raise named from error
