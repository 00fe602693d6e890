"""The random generators' states in every checkpoint: a resumed fit draws the dropout masks, augmentations
and noise that the fit it continues would have drawn."""

from __future__ import annotations

import random
from typing import Any, cast

import lightning as L
import numpy as np
import torch
import torch.distributed as dist


class RandomStateInCheckpoint(L.Callback):
    """Writes each rank's random states (torch's on the CPU and on the rank's GPU, numpy's, Python's) into
    every checkpoint, and sets this rank's from them when a resumed fit starts training.

    Lightning keeps none: a resumed fit would draw from the states its process was seeded with, and with
    dropout its steps after the resume would differ from those of the fit it continues. Every rank writes
    each checkpoint, so every rank takes part in gathering the states; a resume on another number of ranks
    keeps the seeded ones.
    The states are set as training starts, after the restore and the sanity check, the nearest point to
    the next step.
    """

    def __init__(self) -> None:
        self.restored: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        states = random_states()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ranks: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(ranks, states)
            return {"ranks": ranks}
        return {"ranks": [states]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = list(state_dict.get("ranks") or [])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if len(self.restored) == trainer.world_size:
            set_random_states(self.restored[trainer.global_rank], pl_module.device)
        self.restored = []


def random_states() -> dict[str, Any]:
    """This process's generator states in types ``torch.load(weights_only=True)`` reads: torch's on the CPU
    and on the current GPU (not every visible one, which would open a context on each), numpy's, Python's."""
    numpy_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    kind, keys, position, has_gauss, gauss = numpy_state
    version, python_state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": [version, list(python_state), python_gauss],
    }


def set_random_states(states: dict[str, Any], device: torch.device) -> None:
    """Set this process's generators from ``random_states``; the GPU's only where the states have one and the
    module trains on a GPU."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, python_state, python_gauss = states["python"]
    random.setstate((version, tuple(python_state), python_gauss))
