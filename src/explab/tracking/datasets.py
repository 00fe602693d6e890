"""The data a run trained, validated and tested on, as MLflow dataset inputs.

Each split is one dataset input: named ``<data>-<split>`` (MLflow keeps one dataset per name and digest in an
experiment, so the three splits need three names), with the data module's fingerprint as its digest, its
source (a file or folder, or the class that makes the data), the shapes of its inputs and targets, and the
context MLflow's UI shows (training / validation / test). Runs can then be searched by dataset:
``dataset.digest = '<fingerprint>'``, ``dataset.name = 'digits-train'``, ``dataset.context = 'training'``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from explab.utils.logging import get_logger

if TYPE_CHECKING:
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.entities import DatasetInput

    from explab.data.base import TensorDataModule
    from explab.tracking.run import TrackedRun

log = get_logger(__name__)

CONTEXTS = {"train": "training", "val": "validation", "test": "test"}


def dataset_source(source: str) -> DatasetSource:
    """A local file or folder as MLflow's file source; anything else (a class path) as a code source."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    if Path(source).exists():
        with warnings.catch_warnings():
            # MLflow registers its local source under two schemes ("" and "file") and warns that a path fits
            # both; they are the same class
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted", UserWarning)
            return resolve_dataset_source(Path(source).resolve().as_uri())
    return CodeDatasetSource(tags={"data_module": source})


def dataset_name(source: str) -> str:
    """``mnist`` for a folder ``.../mnist``, ``digits`` for ``.../digits.csv.gz``, the class for code."""
    path = Path(source)
    if path.exists():
        return path.name.split(".")[0] or "data"
    return source.rsplit(".", 1)[-1].removesuffix("DataModule").lower() or "data"


def log_dataset_inputs(run: TrackedRun, datamodule: TensorDataModule) -> None:
    """Every non-empty split of ``datamodule`` as a dataset input of ``run``, with its context."""
    from mlflow.data.numpy_dataset import from_numpy
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    source = datamodule.source()
    name = dataset_name(source)
    inputs = []
    for split, context in CONTEXTS.items():
        data = datamodule.splits.get(split)
        if data is None or not len(data):
            continue
        dataset = from_numpy(
            data.x.numpy(),  # shares the tensor's memory; MLflow reads shapes and dtypes, not the values
            targets=data.y.numpy(),
            source=dataset_source(source),
            name=f"{name}-{split}",
            digest=datamodule.fingerprint,  # given, so MLflow does not hash the arrays again
        )
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    _log_inputs(run, inputs)


def _log_inputs(run: TrackedRun, inputs: list[DatasetInput]) -> None:
    """Link ``inputs`` to the run, making each dataset the experiment lacks.

    MLflow looks up which datasets the experiment has, then inserts the others, without locking the lookup: two
    runs of a sweep that log a new dataset at the same moment both insert it, and the later one fails on the
    table's unique name and digest. Asked once more, MLflow finds the winner's dataset and links the run to it
    (linking is idempotent); any other error fails again and is raised.
    """
    from mlflow.exceptions import MlflowException

    try:
        run.client.log_inputs(run.run_id, datasets=inputs)
    except MlflowException as err:
        log.debug("logging the dataset inputs again after %s", err)
        run.client.log_inputs(run.run_id, datasets=inputs)
