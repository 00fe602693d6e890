"""Backbones whose depth and width come from config."""

from __future__ import annotations

import pytest
import torch

from explab.models import MLP, ConvNet


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_convnet_depth_is_configurable(depth: int) -> None:
    net = ConvNet([1, 8, 8], 10, channels=[16, 32], pool=[True, True], depth=depth, hidden=[32])
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == depth
    assert net(torch.zeros(4, 1, 8, 8)).shape == (4, 10)


def test_convnet_refuses_a_depth_that_shrinks_the_image_away() -> None:
    with pytest.raises(ValueError, match="shrinks an input"):
        ConvNet([1, 8, 8], 10, channels=[8] * 5, pool=True, padding=0)


def test_mlp_depth() -> None:
    net = MLP(64, 10, depth=3, width=16)
    assert sum(isinstance(m, torch.nn.Linear) for m in net.modules()) == 4
