"""The logged MLflow model takes raw inputs (the data module's preprocessing is inside it), loads on any
machine, and answers the same through ``mlflow.pyfunc``, ``mlflow models serve`` and ``explab-predict``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from omegaconf import open_dict
from sklearn.datasets import load_digits

from explab.data.base import stratified_split
from explab.errors import UsageError
from explab.serving import ROWS_PER_PASS
from explab.tracking.model import load_model, model_code
from explab.train import train
from tests.conftest import BIN, runs_in, tracking_uri_for
from tests.support.network import free_port, wait_until_answering


def test_raw_digits_give_the_runs_test_accuracy(logged_run: str, store: Path) -> None:
    """Raw 8x8 pixels of 0..16, cut into the run's test split: the model's accuracy is the run's test/acc
    only if the preprocessing inside it is the training's, to the last sample."""
    mlflow.set_tracking_uri(tracking_uri_for(store))
    digits = load_digits()
    _, _, test = stratified_split(digits.target, (0.15, 0.15), seed=42)  # the recipe's split of its seed
    probabilities = np.asarray(mlflow.pyfunc.load_model(f"runs:/{logged_run}/model").predict(digits.images[test]))
    assert probabilities.shape == (len(test), 10) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = (probabilities.argmax(1) == digits.target[test]).mean()
    [run] = runs_in(store, "digits_cnn")
    assert accuracy == pytest.approx(run.data.metrics["test/acc"], abs=1e-6)


def test_explabs_loader_leaves_no_copy_of_the_model_and_names_one_cut_short(
    logged_run: str, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow.set_tracking_uri(tracking_uri_for(store))
    downloads = tmp_path / "tmp"
    downloads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(downloads))  # where MLflow and explab make temporary folders
    model = load_model(f"runs:/{logged_run}/model")  # explab-predict's loader
    assert not list(downloads.iterdir()), "the model's downloaded files are removed once it is loaded"
    assert np.asarray(model.predict(load_digits().images[:3])).shape == (3, 10)
    # its weights cut short in the store: named with the model, not torch's traceback from a deleted folder
    [weights] = store.rglob("weights.pt")
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(UsageError) as refused:
        load_model(f"runs:/{logged_run}/model")
    assert str(refused.value) == (
        f"The model runs:/{logged_run}/model: its weights cannot be read (PytorchStreamReader failed reading zip "
        "archive: failed finding central directory): its copy in the store was cut short or damaged (a copy "
        "stopped partway, a full disk). Restore the store's artifacts from a backup, or train the run again with "
        "explab-train reproduce=RUN_ID log_model=true"
    )
    assert not list(downloads.iterdir()), "nor when it cannot be loaded"


def test_a_large_input_passes_through_the_network_a_bounded_number_of_rows_at_a_time(
    logged_run: str, store: Path
) -> None:
    """A folder of images as large as a data set is one input: the network takes it in passes of
    ``ROWS_PER_PASS`` rows, so memory is that of one pass, and every row's answer is the one it gets alone."""
    mlflow.set_tracking_uri(tracking_uri_for(store))
    model = mlflow.pyfunc.load_model(f"runs:/{logged_run}/model")
    network = model.unwrap_python_model().network
    passes: list[int] = []
    network.register_forward_hook(lambda _module, inputs, _output: passes.append(len(inputs[0])))
    images = np.tile(load_digits().images, (2, 1, 1))  # 3,594 rows
    probabilities = np.asarray(model.predict(images))
    assert passes == [ROWS_PER_PASS] * 3 + [len(images) - 3 * ROWS_PER_PASS], passes
    assert probabilities.shape == (len(images), 10)
    alone = np.asarray(model.predict(images[-5:]))
    assert np.allclose(probabilities[-5:], alone, atol=1e-6), "a row's answer does not depend on its pass"


@contextmanager
def served(model_uri: str, store: Path, cwd: Path) -> Iterator[str]:
    """``mlflow models serve`` on 127.0.0.1, as the README shows it; yields its invocations URL."""
    port = free_port()
    log = cwd / f"serve-{port}.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri_for(store), "PATH": f"{BIN}:{os.environ['PATH']}"}
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/ping", server, log.read_text)
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def post(url: str, payload: dict) -> np.ndarray:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return np.asarray(json.loads(answer.read())["predictions"])


@pytest.mark.slow
def test_served_model_answers_raw_digits_and_raw_text(compose_cfg, logged_run: str, store: Path, tmp_path: Path):
    from tests.support.formats import NEGATIVE, POSITIVE, write_snippets

    mlflow.set_tracking_uri(tracking_uri_for(store))
    digits = load_digits().images[:8]
    expected = np.asarray(mlflow.pyfunc.load_model(f"runs:/{logged_run}/model").predict(digits))
    with served(f"runs:/{logged_run}/model", store, tmp_path) as url:
        assert np.allclose(post(url, {"inputs": digits.tolist()}), expected, atol=1e-5)

    snippets = write_snippets(tmp_path / "snippets.csv.gz", count=200)
    train(
        compose_cfg(
            "experiment=rotten_tomatoes_sentiment", f"data.path={snippets}", "data.min_freq=1", "log_model=true",
            "trainer.max_epochs=6", "trainer.enable_progress_bar=false",
        )
    )  # fmt: skip
    [run] = runs_in(store, "rotten_tomatoes_sentiment")
    texts = [POSITIVE[0], NEGATIVE[0], "a word never seen before"]
    uri = f"runs:/{run.info.run_id}/model"
    expected = np.asarray(mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": texts})))
    assert list(expected.argmax(1)[:2]) == [1, 0], "the raw texts are encoded with the run's vocabulary"
    with served(uri, store, tmp_path) as url:
        answered = post(url, {"dataframe_records": [{"text": t} for t in texts]})
    assert np.allclose(answered, expected, atol=1e-5)


@pytest.mark.parametrize("namespace", [False, True], ids=["package", "namespace package"])
def test_the_model_carries_a_labs_own_package_and_nothing_its_environment_has(
    compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, namespace: bool
) -> None:
    """explab and installed libraries come with the environment that loads the model; a lab's package, imported
    from its folder, does not, and is copied into the model (MLflow's ``code_paths``). A folder without
    ``__init__.py`` (a namespace package) was left out, and the model loaded only beside the lab."""
    cfg = compose_cfg("experiment=digits_cnn", "+callbacks.fail._target_=tests.support.callbacks.FailAtEpoch")
    assert model_code(cfg) == [], "explab's, torch's; a callback is not part of the model"
    package = tmp_path / "tinylab"
    package.mkdir()
    (package / "net.py").write_text("from torch import nn\n\n\nclass Net(nn.Linear):\n    pass\n")
    if not namespace:
        (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("tinylab", "tinylab.net"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with open_dict(cfg):
        cfg.model.backbone = {"_target_": "tinylab.net.Net", "in_features": 64, "out_features": 10}
    assert model_code(cfg) == [str(package)]


def test_a_run_registers_its_logged_model_under_the_name_given(compose_cfg, store: Path) -> None:
    """``registered_model_name=digits``: the run's model becomes version 1 of ``digits``, loadable by that name."""
    from explab.train import train

    train(compose_cfg("log_model=true", "registered_model_name=digits", "trainer.max_epochs=1",
                      "trainer.enable_progress_bar=false", "log_plots=false"))  # fmt: skip
    [run] = runs_in(store, "digits_cnn")
    client = mlflow.tracking.MlflowClient(tracking_uri_for(store))
    [version] = client.search_model_versions("name='digits'")
    assert (str(version.version), version.run_id) == ("1", run.info.run_id)
    mlflow.set_tracking_uri(tracking_uri_for(store))
    model = mlflow.pyfunc.load_model("models:/digits/1")
    assert len(model.predict(load_digits().images[:3])) == 3
