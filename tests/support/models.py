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


class TestTimeAugmented(nn.Module):
    """A linear backbone that, evaluating, averages its output over ``copies`` noisy copies of each input (test-time
    augmentation): its test holds ``copies`` times the memory its training did, with the same weights."""

    def __init__(self, num_outputs: int, inputs: int = 10, copies: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(inputs, num_outputs)
        self.copies = copies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if self.training or self.copies == 1:
            return self.linear(x)
        noisy = x.repeat(self.copies, 1) + 0.01 * torch.randn(self.copies * len(x), x.shape[1])
        return self.linear(noisy).view(self.copies, len(x), -1).mean(dim=0)
