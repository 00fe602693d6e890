"""Running sums of a training epoch, kept on the device: the training curve without a metric call per step."""

from __future__ import annotations

import torch
from lightning.pytorch.strategies import Strategy
from torch import Tensor


class EpochSums:
    """Loss times samples, samples, and a task's own per-batch sums, added up on the device over one epoch.

    A torchmetrics update costs tens of microseconds of Python per call on a CPU, and on a GPU a dozen kernel
    launches plus a host sync (a Python batch size becomes a device tensor): on small models as much as the
    step itself. The training curve needs only sums: one in-place add per step, reduced over DDP ranks by the
    strategy once per epoch. Validation and test keep torchmetrics (few, large batches; every metric).
    """

    def __init__(self) -> None:
        self.totals: Tensor | None = None
        self.count = 0

    def add(self, loss: Tensor, samples: int, sums: list[Tensor]) -> None:
        values = torch.stack([loss.detach().float() * samples, *(s.float() for s in sums)])
        if self.totals is None:  # float64 where the device has it: sums of squares over a whole epoch
            dtype = torch.float32 if values.device.type == "mps" else torch.float64
            self.totals = torch.zeros(len(values), dtype=dtype, device=values.device)
        self.totals += values
        self.count += samples

    def pop(self, strategy: Strategy) -> tuple[Tensor, Tensor, list[Tensor]] | None:
        """The epoch's (mean loss, samples, task sums) over all ranks, then empty again; None if no step ran."""
        if self.totals is None:
            return None
        totals = strategy.reduce(torch.cat([self.totals, self.totals.new_tensor([self.count])]), reduce_op="sum")
        self.totals, self.count = None, 0
        samples = totals[-1]
        return totals[0] / samples, samples, list(totals[1:-1])
