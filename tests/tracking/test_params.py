"""Flattening a config into MLflow params."""

from __future__ import annotations

from explab.tracking.params import MAX_VALUE_LENGTH, TRUNCATION_MARK, flatten_params


def test_flatten_params_truncates_long_values_and_skips_hydra() -> None:
    params = flatten_params({"a": {"b": 1, "c": [1, 2]}, "long": "x" * 10_000, "hydra": {"run": 1}})
    assert params["a.b"] == "1" and params["a.c"] == "[1, 2]"
    assert len(params["long"]) == MAX_VALUE_LENGTH and params["long"].endswith(TRUNCATION_MARK)
    assert not any(k.startswith("hydra") for k in params)
