"""Every reference experiment trains end to end, for a few batches, on files in its real format."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from explab.build import has_validation_split
from explab.train import train
from tests.conftest import runs_in, tracking_uri_for
from tests.support.formats import write_aclimdb, write_cifar, write_mnist, write_snippets


def _mnist(tmp: Path) -> list[str]:
    return [f"data.data_dir={write_mnist(tmp / 'mnist')}", "data.val_size=40"]


def _mnist_without_validation(tmp: Path) -> list[str]:
    """The recipe's own ``data.val_size=0``: every training image trains, the last checkpoint is tested."""
    return [f"data.data_dir={write_mnist(tmp / 'mnist')}"]


def _cifar(tmp: Path) -> list[str]:
    return [f"data.data_dir={write_cifar(tmp / 'cifar-10-batches-py')}"]


def _imdb(tmp: Path) -> list[str]:
    return [f"data.data_dir={write_aclimdb(tmp / 'aclImdb')}", "data.min_freq=1"]


def _snippets(tmp: Path) -> list[str]:
    return [f"data.path={write_snippets(tmp / 'snippets.csv.gz')}", "data.min_freq=1"]


DATA: dict[str, Callable[[Path], list[str]]] = {
    "digits_cnn": lambda tmp: [],
    "diabetes_mlp": lambda tmp: [],
    "mnist_cnn": _mnist_without_validation,
    "mnist_fast": _mnist,
    "fashion_mnist_cnn": _mnist_without_validation,
    "cifar10_cnn": _cifar,
    "cifar10_lenet": _cifar,
    "cifar10_widecnn": _cifar,
    "imdb_sentiment": _imdb,
    "rotten_tomatoes_sentiment": _snippets,
    "rotten_tomatoes_fasttext": _snippets,
}


def test_every_experiment_is_covered() -> None:
    from explab.config import config_dir

    assert {p.stem for p in (config_dir() / "experiment").glob("*.yaml")} <= set(DATA)


@pytest.mark.parametrize("experiment", sorted(DATA))
def test_experiment_trains_end_to_end(experiment: str, compose_cfg, store: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        f"experiment={experiment}",
        "trainer=limit_batches",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        *DATA[experiment](tmp_path),
    )
    metrics = train(cfg)
    assert "test/loss" in metrics
    [run] = runs_in(store, cfg.experiment_name)
    assert run.info.status == "FINISHED"
    assert len(run.data.tags["data.fingerprint"]) == 16
    if has_validation_split(cfg):
        assert cfg.optimized_metric in run.data.metrics
    else:  # trained on every training sample: nothing validated, the last checkpoint tested
        assert run.data.tags["data.n_val"] == "0" and not [k for k in run.data.metrics if k.startswith("val/")]
        assert run.data.tags["explab.best_checkpoint"] == "checkpoints/last.ckpt"
    from explab.tracking.store import open_client

    client = open_client(tracking_uri_for(store))
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    figure = "plots/predicted_vs_true.png" if experiment == "diabetes_mlp" else "plots/confusion_matrix.png"
    assert {"plots/learning_curves.png", figure} <= plots
    # each split is a dataset input whose source is the real file or folder the data came from
    inputs = run.inputs.dataset_inputs
    assert {i.dataset.digest for i in inputs} == {run.data.tags["data.fingerprint"]}
    for item in inputs:
        uri = json.loads(item.dataset.source)["uri"]
        assert item.dataset.source_type == "local" and Path(uri.removeprefix("file://")).exists(), uri
    expected = {"training", "test", *(["validation"] if has_validation_split(cfg) else [])}
    assert {t.value for i in inputs for t in i.tags if t.key == "mlflow.data.context"} == expected
