"""Gradient accumulation longer than an epoch: Lightning cuts it at the epoch's end without a word."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pytest

from tests.conftest import runs_in, tracking_uri_for


@pytest.mark.parametrize("accumulate", [8, 5])
def test_accumulating_more_batches_than_an_epoch_holds_is_warned_of(
    compose_cfg, store: Path, caplog, accumulate: int
) -> None:
    from explab.train import train

    caplog.set_level(logging.WARNING, logger="explab")
    train(compose_cfg(f"+trainer.accumulate_grad_batches={accumulate}", "+trainer.limit_train_batches=5",
                      "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "log_plots=false"))  # fmt: skip
    [run] = runs_in(store, "digits_cnn")
    # the premise: one optimizer step an epoch either way, 5 batches each, whatever the 8 asked
    client = mlflow.tracking.MlflowClient(tracking_uri_for(store))
    [fit] = client.get_metric_history(run.info.run_id, "perf/fit_seconds")  # logged at the fit's global step
    assert fit.step == 2
    warned = "trainer.accumulate_grad_batches=8 is more than an epoch's 5 training batches: Lightning steps the"
    assert (warned in caplog.text) == (accumulate > 5), caplog.text
    assert "every step sums 5 batches, not 8. Give 5 or fewer" in caplog.text or accumulate == 5
