"""The logged MLflow model: loads on any machine and predicts like the trained module."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest

from explab.data import DigitsDataModule
from explab.tracking.model import DEVICE_VARIABLE, load_model
from explab.train import train
from tests.conftest import runs_in, tracking_uri_for


def test_logged_model_loads_on_the_cpu_where_mlflow_would_pick_a_gpu(
    compose_cfg, store: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On a GPU machine MLflow loads pytorch models onto CUDA, and a model exported on the CPU fails there.

    The variable makes MLflow pick CUDA as it would with a GPU visible: logging must still validate the input
    example (on the CPU), and explab's loader must still load and predict.
    """
    monkeypatch.setenv(DEVICE_VARIABLE, "cuda")
    train(compose_cfg("log_model=true", "trainer=fast_dev_run"))
    assert "Failed to validate serving input example" not in caplog.text
    assert os.environ[DEVICE_VARIABLE] == "cuda", "the variable is put back after logging"
    [run] = runs_in(store, "digits_cnn")
    mlflow.set_tracking_uri(tracking_uri_for(store))
    with pytest.raises(Exception, match="can't be loaded on 'cuda'"):
        mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")  # what the README warns about
    data = DigitsDataModule(seed=42)
    data.setup()
    probabilities = np.asarray(load_model(f"runs:/{run.info.run_id}/model").predict(data.splits["test"].x.numpy()))
    assert probabilities.shape == (len(data.splits["test"]), 10)


def test_logged_model_predicts_through_pyfunc(
    logged_run: str, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow.set_tracking_uri(tracking_uri_for(store))
    downloads = tmp_path / "tmp"
    downloads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(downloads))  # where MLflow and explab make temporary folders
    model = load_model(f"runs:/{logged_run}/model")  # explab-predict's loader (on the CPU, GPU or not)
    assert not list(downloads.iterdir()), "the model's downloaded files are removed once it is loaded"
    data = DigitsDataModule(seed=42)
    data.setup()
    probabilities = np.asarray(model.predict(data.splits["test"].x.numpy()))
    assert probabilities.shape == (len(data.splits["test"]), 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = (probabilities.argmax(1) == data.splits["test"].y.numpy()).mean()
    assert accuracy > 0.5
