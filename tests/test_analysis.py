"""What researchers do after training: seed reports, the logged model, predictions from files."""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from explab.data import DigitsDataModule
from explab.report import report
from explab.tracking.model import DEVICE_VARIABLE, load_model
from explab.train import train

from .conftest import run_cli, runs_in, tracking_uri_for


def test_report_groups_runs_by_config_minus_seed(compose_cfg, store: Path) -> None:
    results = {}
    for lr in ("0.003", "0.0003"):
        for seed in (1, 2):
            metrics = train(
                compose_cfg(
                    f"optimizer.lr={lr}", f"seed={seed}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"
                )
            )
            results.setdefault(lr, []).append(metrics["test/acc"])
    markdown = report(compose_cfg("experiment_name=digits_cnn", "metrics=[test/acc]", config_name="report"))
    for lr, values in results.items():
        expected = f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"
        line = next(line for line in markdown.splitlines() if f"optimizer.lr={lr} " in line + " ")
        assert f"| 2 | {expected} |" in line, line
    [report_run] = [r for r in runs_in(store, "digits_cnn") if r.data.tags.get("explab.report") == "true"]
    client = mlflow.tracking.MlflowClient(tracking_uri_for(store))
    assert {a.path for a in client.list_artifacts(report_run.info.run_id, "report")} == {
        "report/report.md",
        "report/report.csv",
    }


def test_report_of_unknown_experiment_names_the_known_ones(compose_cfg, store: Path) -> None:
    train(compose_cfg("trainer=fast_dev_run"))
    with pytest.raises(ValueError, match=r"no experiment 'nope'.*digits_cnn"):
        report(compose_cfg("experiment_name=nope", config_name="report"))


@pytest.fixture
def logged_run(compose_cfg, store: Path) -> str:
    train(compose_cfg("log_model=true", "trainer.max_epochs=3", "trainer.enable_progress_bar=false"))
    [run] = runs_in(store, "digits_cnn")
    return run.info.run_id


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


def test_predict_cli_reads_arrays_and_image_folders(logged_run: str, store: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    (tmp_path / "images").mkdir()
    for i in range(6):
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(tmp_path / "images" / f"d{i}.png")
    np.save(tmp_path / "x.npy", ((digits.images[:6] / 16 - 0.5) / 0.5).astype(np.float32)[:, None])
    common = [f"model_uri=runs:/{logged_run}/model", f"paths.mlruns_dir={store}", f"paths.log_dir={tmp_path}/logs"]
    for source, output in (("x.npy", "from_array.csv"), ("images", "from_images.csv")):
        done = run_cli(
            "explab-predict", f"input={tmp_path / source}", f"output={tmp_path / output}", *common, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr[-2000:]
    rows = [(tmp_path / name).read_text().splitlines() for name in ("from_array.csv", "from_images.csv")]
    assert rows[0][0].startswith("input,prediction,prob_0") and len(rows[0]) == 7
    array_predictions = [line.split(",")[1] for line in rows[0][1:]]
    image_predictions = [line.split(",")[1] for line in rows[1][1:]]
    assert array_predictions == image_predictions, "an image folder is normalised like the training data"
    assert sum(p == str(t) for p, t in zip(array_predictions, digits.target[:6], strict=True)) >= 3


def test_predict_cli_encodes_text_with_the_runs_vocabulary(compose_cfg, store: Path, tmp_path: Path) -> None:
    from .formats import NEGATIVE, POSITIVE, write_snippets

    snippets = write_snippets(tmp_path / "snippets.csv.gz", count=200)
    train(
        compose_cfg(
            "experiment=rotten_tomatoes_sentiment",
            f"data.path={snippets}",
            "data.min_freq=1",
            "log_model=true",
            "trainer.max_epochs=6",
            "trainer.enable_progress_bar=false",
        )
    )
    [run] = runs_in(store, "rotten_tomatoes_sentiment")
    texts = tmp_path / "reviews.txt"
    texts.write_text("\n".join([POSITIVE[0], NEGATIVE[0], "a word never seen before"]) + "\n")
    done = run_cli(
        "explab-predict",
        f"model_uri=runs:/{run.info.run_id}/model",
        f"input={texts}",
        f"output={tmp_path / 'out.csv'}",
        f"paths.mlruns_dir={store}",
        f"paths.log_dir={tmp_path}/logs",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "input,prediction,prob_0,prob_1" and len(lines) == 4
    assert [line.split(",")[-3] for line in lines[1:3]] == ["1", "0"], lines
