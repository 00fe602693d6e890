"""``explab-predict model_uri=runs:/ID/model input=PATH``: predictions with class probabilities as CSV.

Inputs: a ``.npy`` array or a numeric ``.csv`` already shaped like the training inputs; a folder of
images, converted, resized and normalised the way the source run's data module did; or a ``.txt`` file of
texts, one per line, encoded with the vocabulary the source run logged.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from explab.cli import report_user_errors
from explab.config import config_dir
from explab.errors import UsageError
from explab.utils.logging import get_logger

log = get_logger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm"}


def _input_shape(model: Any) -> list[int]:
    schema = model.metadata.get_input_schema()
    return list(schema.inputs[0].shape)[1:] if schema is not None else []


def _source_artifact(model_uri: str, tracking_uri: str, path: str) -> str | None:
    """A text artifact of the run the model came from (``runs:/ID/...`` URIs); None when there is none."""
    if not model_uri.startswith("runs:/"):
        return None
    from explab.tracking import TrackedRun

    run_id = model_uri.removeprefix("runs:/").split("/", 1)[0]
    try:
        return TrackedRun(tracking_uri, run_id).load_text(path)
    except Exception:
        return None


def _run_config(model_uri: str, tracking_uri: str) -> dict[str, Any]:
    """The data config of the run the model came from (for image normalisation); empty if unknown."""
    import yaml

    text = _source_artifact(model_uri, tracking_uri, "config/config.yaml")
    return (yaml.safe_load(text) or {}).get("data", {}) if text else {}


def read_texts(path: Path, model_uri: str, tracking_uri: str) -> tuple[np.ndarray, list[str]]:
    """One text per line, tokenised and encoded with the vocabulary the source run logged."""
    import json

    from explab.data.text import Vocabulary, tokenize

    record = _source_artifact(model_uri, tracking_uri, "preprocessing/vocabulary.json")
    if record is None:
        raise UsageError(
            f"{path}: text input needs the vocabulary of the training run; give a runs:/ID/model "
            "URI of an explab text model"
        )
    vocabulary = json.loads(record)
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = Vocabulary.from_dict(vocabulary).encode([tokenize(t) for t in texts], vocabulary["max_len"])
    return ids, [t[:60] for t in texts]


def read_images(folder: Path, shape: list[int], data_cfg: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if len(shape) != 3:
        raise UsageError(f"this model takes inputs of shape {shape}, not images")
    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(Image.open(p).convert(mode).resize((width, height)), dtype=np.float32) / 255.0 for p in files]
    x = np.stack(arrays).reshape(len(files), height, width, channels).transpose(0, 3, 1, 2)
    mean = np.asarray(data_cfg.get("mean", 0.0), dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(data_cfg.get("std", 1.0), dtype=np.float32).reshape(-1, 1, 1)
    return ((x - mean) / std).astype(np.float32), [p.name for p in files]


def read_inputs(path: Path, shape: list[int], data_cfg: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    if path.is_dir():
        return read_images(path, shape, data_cfg)
    if not path.is_file():
        raise UsageError(f"input={path} does not exist; give a .npy array, a numeric .csv or a folder of images")
    if path.suffix == ".npy":
        x = np.load(path, allow_pickle=False).astype(np.float32)
    elif path.suffix == ".csv":
        # ndmin=2: a one-row file is one input, not a column of numbers; an empty file is refused below
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Empty input file.*")
            x = np.genfromtxt(path, delimiter=",", dtype=np.float32, skip_header=int(_has_header(path)), ndmin=2)
    else:
        raise UsageError(
            f"{path}: give a .npy array, a numeric .csv or a folder of images (text models take a .txt file)"
        )
    return _as_model_inputs(path, x, shape), [str(i) for i in range(len(x))]


def _as_model_inputs(path: Path, x: np.ndarray, shape: list[int]) -> np.ndarray:
    """``x`` as a batch of the model's input shape; empty input, empty or non-numeric cells and a wrong
    number of values per input are refused with the shape the model expects."""
    expected = f"{math.prod(shape)} numbers per input (shape {shape})" if shape else "numbers"
    if x.size == 0 or len(x) == 0:
        raise UsageError(f"{path} holds no inputs: give one row per input, {expected}")
    if np.isnan(x).any():
        rows = sorted({int(i) + 1 for i in np.argwhere(np.isnan(x.reshape(len(x), -1)))[:, 0]})[:10]
        raise UsageError(f"{path}: input(s) {rows} have empty or non-numeric values; every value must be a number")
    if not shape or list(x.shape[1:]) == shape:
        return x
    if x[0].size != math.prod(shape):
        raise UsageError(f"{path} gives {x[0].size} values per input; this model takes {expected}")
    return x.reshape(len(x), *shape)


def _has_header(path: Path) -> bool:
    """A first row of names only (no cell is a number) is a header; a row with some numbers is data."""
    with path.open() as handle:
        first = handle.readline().strip()
    if not first:
        return False
    cells = [cell.strip() for cell in first.split(",")]
    return not any(_is_number(cell) for cell in cells)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def predict(cfg: DictConfig) -> Path:
    import mlflow

    from explab.tracking.model import load_model

    mlflow.set_tracking_uri(cfg.tracking_uri)
    model = load_model(cfg.model_uri)
    source = Path(cfg.input)
    if source.suffix == ".txt":
        x, names = read_texts(source, cfg.model_uri, cfg.tracking_uri)
    else:
        x, names = read_inputs(source, _input_shape(model), _run_config(cfg.model_uri, cfg.tracking_uri))
    outputs = np.asarray(model.predict(x))
    output = Path(cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        writer = csv.writer(handle)
        if outputs.ndim == 2 and outputs.shape[1] > 1:
            writer.writerow(["input", "prediction", *[f"prob_{k}" for k in range(outputs.shape[1])]])
            for name, row in zip(names, outputs, strict=True):
                writer.writerow([name, int(row.argmax()), *[f"{p:.6f}" for p in row]])
        else:
            writer.writerow(["input", "prediction"])
            for name, value in zip(names, outputs.reshape(len(names)), strict=True):
                writer.writerow([name, f"{float(value):.6f}"])
    log.info("%d predictions written to %s", len(names), output.resolve())
    return output


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="predict")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> None:
    predict(cfg)


def main() -> None:
    """Console script ``explab-predict``."""
    from explab.cli import run_hydra_app

    run_hydra_app(_hydra_main, config_name="predict")


if __name__ == "__main__":
    main()
