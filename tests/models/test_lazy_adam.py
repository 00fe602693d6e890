"""LazyAdam against torch's own optimisers: Adam on dense gradients, SparseAdam on sparse ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explab.models import LazyAdam


def _model(sparse: bool) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.EmbeddingBag(50, 4, mode="mean", sparse=sparse), nn.Linear(4, 2))


def _train(
    model: nn.Module, optimizers: list[torch.optim.Optimizer], steps: int = 20, batches: torch.Generator | None = None
) -> None:
    batches = batches or torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 50, (8, 5), generator=batches)
        labels = torch.randint(0, 2, (8,), generator=batches)
        for optimizer in optimizers:
            optimizer.zero_grad()
        nn.functional.cross_entropy(model(ids), labels).backward()
        for optimizer in optimizers:
            optimizer.step()


def test_lazy_adam_is_sparse_adam_on_sparse_rows_and_adam_on_dense_parameters() -> None:
    lazy = _model(sparse=True)
    _train(lazy, [LazyAdam(lazy.parameters(), lr=1e-2)])
    reference = _model(sparse=True)
    _train(
        reference,
        [torch.optim.SparseAdam([reference[0].weight], lr=1e-2), torch.optim.Adam(reference[1].parameters(), lr=1e-2)],
    )
    for ours, theirs in zip(lazy.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_lazy_adam_state_resumes_like_any_optimizer() -> None:
    whole = _model(sparse=True)
    _train(whole, [LazyAdam(whole.parameters(), lr=1e-2)], steps=20)

    halves = _model(sparse=True)
    batches = torch.Generator().manual_seed(1)
    first = LazyAdam(halves.parameters(), lr=1e-2)
    _train(halves, [first], steps=10, batches=batches)
    second = LazyAdam(halves.parameters(), lr=1e-2)
    second.load_state_dict(first.state_dict())
    _train(halves, [second], steps=10, batches=batches)
    for ours, theirs in zip(halves.parameters(), whole.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_lazy_adam_refuses_impossible_settings() -> None:
    with pytest.raises(ValueError, match="lr > 0"):
        LazyAdam(_model(sparse=False).parameters(), lr=0)
