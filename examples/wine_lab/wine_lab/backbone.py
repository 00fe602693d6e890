"""A residual MLP: each block adds its output to its input, so depth can grow without hurting training."""

from __future__ import annotations

from torch import Tensor, nn


class ResidualMLP(nn.Module):
    """A linear stem to ``width``, ``depth`` residual blocks (LayerNorm, Linear, GELU, dropout), a linear head."""

    def __init__(self, in_features: int, num_outputs: int, width: int = 64, depth: int = 2, dropout: float = 0.1):
        super().__init__()
        self.in_features = in_features  # what explab's task module checks the data's samples against
        self.stem = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout))
            for _ in range(depth)
        )
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)
