"""Backbones whose depth and width come from config."""

from __future__ import annotations

import pytest
import torch
from torch import nn

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


def test_a_convnets_batch_norm_starts_from_the_statistics_torch_gives_it() -> None:
    """The pass that sizes the dense layers ran in training mode, and every batch norm started from running
    statistics with that pass's zeros folded in (variances of 0.9, one batch tracked)."""
    net = ConvNet([1, 8, 8], 10, channels=[4, 8], batch_norm=True)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2 and net.training and all(m.training for m in net.modules())
    for norm in norms:
        assert torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))
        assert torch.equal(norm.running_var, torch.ones_like(norm.running_var))
        assert int(norm.num_batches_tracked) == 0


def test_mlp_depth() -> None:
    net = MLP(64, 10, depth=3, width=16)
    assert sum(isinstance(m, torch.nn.Linear) for m in net.modules()) == 4


def test_bag_of_ngrams_hashes_bigrams_after_the_vocabulary_and_skips_padding() -> None:
    from explab.models import BagOfNgrams

    model = BagOfNgrams(vocab_size=10, num_outputs=2, buckets=7)
    ids = torch.tensor([[3, 4, 5, 0, 0]])
    grams = model.ngrams(ids)
    assert grams.shape == (1, 9)
    assert grams[0, :5].tolist() == [3, 4, 5, 0, 0]
    bigrams = grams[0, 5:].tolist()
    assert all(10 <= b < 17 for b in bigrams[:2]) and bigrams[2:] == [0, 0], "a pair with padding is padding"
    assert model.eval()(ids).shape == (1, 2)


def test_keras_init_gives_glorot_weights_and_zero_biases(compose_cfg) -> None:
    from explab.build import build_model

    model = build_model(compose_cfg("experiment=mnist_cnn"))
    layers = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert layers and all(float(m.bias.abs().max()) == 0.0 for m in layers)
    for layer in layers:
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        # drawn in float32, whose nearest value to the bound may lie just above it
        bound = (6 / (fan_in + fan_out)) ** 0.5 * (1 + torch.finfo(torch.float32).eps)
        assert float(layer.weight.abs().max()) <= bound
    default = build_model(compose_cfg("experiment=mnist_cnn", "model.init=default"))
    assert any(float(m.bias.abs().max()) > 0 for m in default.backbone.modules() if isinstance(m, nn.Linear))


def test_an_unknown_init_scheme_lists_the_known_ones(compose_cfg) -> None:
    from explab.errors import ConfigError
    from explab.validation import validate_config

    with pytest.raises(ConfigError, match=r"model.init='glorot'.*one of default, keras"):
        validate_config(compose_cfg("model.init=glorot"))


def test_bag_of_ngrams_linear_term_starts_at_zero_and_sparse_gradients_touch_only_used_rows() -> None:
    from explab.models import BagOfNgrams

    settings = {"vocab_size": 10, "num_outputs": 2, "buckets": 7, "dropout": 0.0, "token_dropout": 0.0}
    torch.manual_seed(0)
    plain = BagOfNgrams(**settings)
    torch.manual_seed(0)
    model = BagOfNgrams(**settings, linear=True, sparse=True)
    ids = torch.tensor([[3, 4, 5, 0, 0]])
    assert torch.equal(model(ids), plain(ids)), "the per-n-gram scores start at zero"
    model(ids).sum().backward()
    for table in (model.embedding, model.linear):
        assert table.weight.grad.is_sparse
        rows = set(table.weight.grad.coalesce().indices()[0].tolist())
        assert rows == set(model.ngrams(ids)[0].tolist()) - {0}, "only the rows of the text's n-grams"


def test_a_sparse_backbone_with_an_optimizer_that_cannot_take_it_is_refused(compose_cfg) -> None:
    from explab.errors import ConfigError
    from explab.validation import validate_config

    sparse = ("model=bag_of_ngrams", "data=rotten_tomatoes", "model.backbone.sparse=true")
    with pytest.raises(ConfigError, match=r"optimizer='torch.optim.Adam'.*optimizer=lazy_adam"):
        validate_config(compose_cfg(*sparse, "optimizer=adam"))
    validate_config(compose_cfg(*sparse, "optimizer=lazy_adam"))


def test_the_text_models_attention_pools_under_mixed_precision() -> None:
    """Under CPU autocast the score layer answers in bfloat16 beside float32 states, and float32's floor, the
    padding's score, does not fit in bfloat16: every run of the recurrent text model with
    ``precision=bf16-mixed`` failed in its first validation step. Padding still gets no weight."""
    from explab.models.backbones.text import AttentionPooling

    torch.manual_seed(0)
    pool, states = AttentionPooling(4), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded, alone = pool(states, mask), pool(states[:1, :2], mask[:1, :2])
    assert padded.dtype == torch.float32 and torch.allclose(padded[:1], alone)


def test_a_text_run_trains_in_mixed_precision(compose_cfg, tmp_path) -> None:
    import math

    from explab.train import train
    from tests.support.formats import write_snippets

    snippets = write_snippets(tmp_path / "snippets.csv.gz", count=120)
    metrics = train(
        compose_cfg(
            "experiment=rotten_tomatoes_sentiment",
            f"data.path={snippets}",
            "data.min_freq=1",
            "precision=bf16-mixed",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
        )
    )
    assert math.isfinite(metrics["test/loss"]), metrics
