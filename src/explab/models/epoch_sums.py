"""Running sums of a training epoch, kept on the device: the training curve without a metric call per step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.strategies import Strategy
from torch import Tensor


class EpochSums:
    """Loss times samples, samples, and a task's own per-batch sums, added up on the device over one epoch.

    A torchmetrics update per step costs Python on a CPU, and kernel launches plus a host sync on a GPU (a
    Python batch size becomes a device tensor); on small models that is as much as the step itself
    (``bench/overhead.py``). The training curve needs only sums: one in-place add per step, reduced over DDP
    ranks by the strategy once per epoch. Validation and test keep torchmetrics (few, large batches; every metric).
    """

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.totals: Tensor | None = None
        self.count = 0

    def add(self, loss: Tensor, samples: int, sums: Mapping[str, Tensor]) -> None:
        """Add one batch: its mean ``loss``, its number of ``samples`` and the task's ``batch_sums``."""
        values = torch.stack([loss.detach().float() * samples, *(s.float() for s in sums.values())])
        if self.totals is None:  # float64 where the device has it: sums of squares over a whole epoch
            dtype = torch.float32 if values.device.type == "mps" else torch.float64
            self.totals = torch.zeros(len(values), dtype=dtype, device=values.device)
            self.names = tuple(sums)
        self.totals += values
        self.count += samples

    def state(self, strategy: Strategy) -> dict[str, Any] | None:
        """The sums so far over all ranks, for a checkpoint written mid-epoch (every rank must call it, as
        every rank writes a checkpoint); None if no step ran."""
        totals = self._over_ranks(strategy)
        if totals is None:
            return None
        return {"names": list(self.names), "totals": totals[:-1].cpu(), "samples": int(totals[-1])}

    def restore(self, state: Mapping[str, Any], holder: bool) -> None:
        """Go on from a checkpoint's ``state``: the ``holder`` rank takes the sums of all ranks and the others
        start from zero, so the epoch's reduction counts them once."""
        totals = state["totals"]
        self.names = tuple(state["names"])
        self.totals = totals.clone() if holder else torch.zeros_like(totals)
        self.count = int(state["samples"]) if holder else 0

    def to(self, device: torch.device) -> None:
        """Keep the sums on ``device``: those restored from a checkpoint are loaded on the CPU before the
        model moves to its device."""
        if self.totals is not None:
            self.totals = self.totals.to(device)

    def pop(self, strategy: Strategy) -> tuple[Tensor, Tensor, dict[str, Tensor]] | None:
        """The epoch's (mean loss, samples, task sums by name) over all ranks, then empty again; None if no
        step ran."""
        totals = self._over_ranks(strategy)
        if totals is None:
            return None
        names, self.names, self.totals, self.count = self.names, (), None, 0
        samples = totals[-1]
        return totals[0] / samples, samples, dict(zip(names, totals[1:-1], strict=True))

    def _over_ranks(self, strategy: Strategy) -> Tensor | None:
        """The totals with the sample count after them, summed over all ranks; None if no step ran."""
        if self.totals is None:
            return None
        return strategy.reduce(torch.cat([self.totals, self.totals.new_tensor([self.count])]), reduce_op="sum")
