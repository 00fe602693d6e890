"""One configurable CNN that covers the reference nets: Keras MNIST CNN, LeNet, the wide CIFAR CNN.

Conv blocks (conv [+ batch norm] + ReLU [+ 2x2 max-pool]) are followed by dense layers. The flatten size is
computed from ``input_shape`` by a dry forward pass, never hard-coded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from explab.models.backbones.mlp import dense_block


def _resize(values: Sequence, depth: int, fill) -> list:
    """Truncate ``values`` to ``depth`` or extend it with ``fill`` (a value, or a callable of the last one)."""
    values = list(values)
    while len(values) < depth:
        values.append(fill(values[-1]) if callable(fill) else fill)
    return values[:depth]


class ConvNet(nn.Module):
    """``depth`` conv blocks with ``channels`` and ``pool`` per block, then ``hidden`` dense layers.

    ``depth`` defaults to ``len(channels)``; a larger depth repeats the last channel count without pooling,
    so a sweep over depth never shrinks the image to nothing.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int] = (32, 64),
        pool: Sequence[bool] | bool = True,
        depth: int | None = None,
        hidden: Sequence[int] = (128,),
        kernel_size: int = 3,
        padding: int | str = 1,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width), got {list(input_shape)}")
        self.input_shape = tuple(input_shape)  # what the task module checks the data's samples against
        depth = len(channels) if depth is None else depth
        if depth < 1 or not channels:
            raise ValueError(f"ConvNet needs depth >= 1 and at least one channel count, got depth={depth}")
        # a width of 0 trained a model that outputs its bias alone, and finished as if it had learnt; a kernel of
        # 0 was said to shrink the image to nothing
        for name, values in (("channels", channels), ("hidden", hidden)):
            if any(not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"ConvNet needs {name} of integers >= 1, got {list(values)}")
        if not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"ConvNet needs kernel_size >= 1, got {kernel_size}")
        if isinstance(padding, int) and padding < 0:
            raise ValueError(f"ConvNet needs padding >= 0 (or 'same'), got {padding}")
        pools = [pool] * len(channels) if isinstance(pool, bool) else list(pool)
        channels = _resize(channels, depth, lambda last: last)
        pools = _resize(pools, depth, False)

        blocks: list[nn.Module] = []
        in_channels = input_shape[0]
        for out_channels, do_pool in zip(channels, pools, strict=True):
            blocks.append(nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding))
            if batch_norm:
                blocks.append(nn.BatchNorm2d(out_channels))
            blocks.append(nn.ReLU(inplace=True))
            if do_pool:
                blocks.append(nn.MaxPool2d(2))
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)

        # in eval mode: a batch norm in training mode would fold the dry pass's zeros into its running statistics
        # (and count it in num_batches_tracked), so every model with batch norm would start from those
        self.features.eval()
        with torch.no_grad():
            try:
                flat = self.features(torch.zeros(1, *input_shape)).numel()
            except RuntimeError as err:
                raise ValueError(
                    f"ConvNet with depth={depth}, channels={channels}, pool={pools} shrinks an input of shape "
                    f"{list(input_shape)} to nothing; use fewer pooling blocks or more padding"
                ) from err
        self.features.train()

        dense: list[nn.Module] = [nn.Flatten()]
        features = flat
        for width in hidden:
            dense += dense_block(features, width, batch_norm=False, dropout=dropout)
            features = width
        dense.append(nn.Linear(features, num_outputs))
        self.head = nn.Sequential(*dense)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
