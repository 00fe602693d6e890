"""Gradient clipping of sparse embedding gradients against torch's own clipping of the same gradients dense."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from explab.models.gradient_clipping import clip_gradients
from explab.train import train
from tests.conftest import runs_in


def _gradients(sparse: bool) -> list[nn.Parameter]:
    """The parameters of an embedding bag and a linear layer after one backward pass; row 3 is used twice."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.EmbeddingBag(20, 4, mode="sum", sparse=sparse), nn.Linear(4, 2))
    nn.functional.cross_entropy(model(torch.tensor([[3, 3, 7], [1, 3, 9]])), torch.tensor([0, 1])).backward()
    return list(model.parameters())


@pytest.mark.parametrize(
    ("algorithm", "clip_val", "torch_clip"),
    [
        ("norm", 0.05, torch.nn.utils.clip_grad_norm_),
        ("norm", 1e3, torch.nn.utils.clip_grad_norm_),  # within the bound: left as they are
        ("value", 0.01, torch.nn.utils.clip_grad_value_),
    ],
)
def test_sparse_gradients_are_clipped_as_torch_clips_them_dense(algorithm: str, clip_val: float, torch_clip) -> None:
    sparse, dense = _gradients(sparse=True), _gradients(sparse=False)
    assert sparse[0].grad is not None and sparse[0].grad.is_sparse
    clip_gradients(sparse, clip_val, algorithm)
    torch_clip(dense, clip_val)
    assert sparse[0].grad.is_sparse, "the embedding's gradient stays sparse for the optimiser"
    for ours, theirs in zip(sparse, dense, strict=True):
        assert ours.grad is not None and theirs.grad is not None
        torch.testing.assert_close(ours.grad.to_dense(), theirs.grad)
    unclipped = _gradients(sparse=False)
    changed = any(not torch.equal(a.grad, b.grad) for a, b in zip(dense, unclipped, strict=True))
    assert changed == (clip_val < 1), "the small bounds clip, the large one does not"


def test_an_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="give norm or value"):
        clip_gradients(_gradients(sparse=True), 0.1, "max")


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_a_sparse_embedding_model_trains_with_gradient_clipping(
    compose_cfg, store: Path, tmp_path: Path, algorithm: str
) -> None:
    """Lightning's clipping calls torch's, which has no kernel for sparse gradients: the fit failed at its first
    step, after the run existed."""
    from tests.support.formats import write_snippets

    train(
        compose_cfg(
            "experiment=rotten_tomatoes_fasttext",
            f"data.path={write_snippets(tmp_path / 'snippets.csv.gz')}",
            "trainer.max_epochs=1",
            "trainer.gradient_clip_val=0.01",
            f"+trainer.gradient_clip_algorithm={algorithm}",
            "trainer.enable_progress_bar=false",
            "log_model=false",
        )
    )
    [run] = runs_in(store, "rotten_tomatoes_fasttext")
    assert run.info.status == "FINISHED" and run.data.params["trainer.gradient_clip_val"] == "0.01"
