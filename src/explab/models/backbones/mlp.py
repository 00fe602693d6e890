"""A multilayer perceptron whose depth and width come from config, so sweeps can tune them."""

from __future__ import annotations

from torch import Tensor, nn


def dense_block(in_features: int, out_features: int, batch_norm: bool, dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(out_features))
    layers.append(nn.ReLU(inplace=True))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units (ReLU, optional batch norm and dropout), then a linear head."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        depth: int = 2,
        width: int = 64,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 0 or width < 1:
            raise ValueError(f"MLP needs depth >= 0 and width >= 1, got depth={depth}, width={width}")
        self.in_features = in_features  # what the task module checks the data's samples against, flattened
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_features
        for _ in range(depth):
            layers += dense_block(features, width, batch_norm, dropout)
            features = width
        layers.append(nn.Linear(features, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
