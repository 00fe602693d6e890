"""Model parts a test builds from a config, as a lab's own package would provide them."""

from __future__ import annotations

import torch
from torch import nn


class MeasuredNet(nn.Module):
    """A backbone whose constructor computes with its weights, which cannot be done on the meta device."""

    def __init__(self, num_outputs: int, inputs: int = 64) -> None:
        super().__init__()
        self.linear = nn.Linear(inputs, num_outputs)
        self.largest_weight = float(self.linear.weight.abs().max().item())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))
