"""``explab-predict model_uri=runs:/ID/model input=PATH``: predictions with class probabilities as CSV.

Inputs are raw, as the logged model takes them: arrays, images or texts (``explab.raw_inputs`` reads them).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from explab.cli import refuse_unread_additions, report_user_errors
from explab.config import config_dir, paths_from_launch_folder
from explab.errors import UsageError, first_line
from explab.raw_inputs import read_inputs
from explab.utils.logging import get_logger

log = get_logger(__name__)
RUN_ID = re.compile(r"[0-9a-f]{32}")


def input_recipe(model: Any) -> dict[str, Any]:
    """The input recipe of a model explab logged (see ``explab.serving``)."""
    from explab.serving import RawInputModel

    try:
        inner = model.unwrap_python_model()
    except Exception:
        inner = None
    if not isinstance(inner, RawInputModel):
        raise UsageError(
            "this model was not logged by this version of explab, whose models take raw inputs; "
            "train the run again (explab-train reproduce=RUN_ID) to log one"
        )
    return inner.recipe


def as_signature_takes(x: Any, model: Any) -> Any:
    """``x`` as the float type the model's signature declares, where it declares another than ``x``'s.

    explab reads numbers as float64, and models log float64 signatures; a model logged with a float32 one (by
    an earlier explab, for a data module without an input recipe) refuses float64, since MLflow never narrows
    a float on its own. Nothing is lost: such a model casts its inputs to float32 for the network anyway.
    """
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.is_tensor_spec() or len(schema.inputs) != 1 or not isinstance(x, np.ndarray):
        return x
    declared = np.dtype(schema.numpy_types()[0])
    if x.dtype.kind == "f" and declared.kind == "f" and declared != x.dtype:
        return x.astype(declared)
    return x


def model_uri_of(given: str) -> str:
    """``given`` as an MLflow model URI: a bare run id and ``runs:/ID`` mean the model that run logged
    (``runs:/ID/model``), since the id is what explab's logs and the UI show; any other URI is kept as typed."""
    given = str(given).strip()
    if RUN_ID.fullmatch(given):
        return f"runs:/{given}/model"
    if given.startswith("runs:/") and RUN_ID.fullmatch(given.removeprefix("runs:/").strip("/")):
        return f"{given.rstrip('/')}/model"
    return given


def model_uri_advice(model_uri: str) -> str:
    """What to give instead of a model URI that did not load: for ``models:/NAME/...`` the versions and aliases
    the registry holds for NAME (or the names it holds); otherwise how a run logs its model."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if not model_uri.startswith("models:/"):
        return (
            "A run logs its model with log_model=true (sweep trials do not: explab-train reproduce=RUN_ID "
            "log_model=true gives one); its URI is runs:/RUN_ID/model"
        )
    name = model_uri.removeprefix("models:/").split("/")[0].split("@")[0]
    client = MlflowClient()
    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        names = ", ".join(sorted(model.name for model in client.search_registered_models())) or "none"
        return (
            f"The registry holds no model '{name}'; it holds: {names}. explab-train registered_model_name=NAME "
            "registers a run's model"
        )
    versions = sorted(int(version.version) for version in client.search_model_versions(f"name='{name}'"))
    aliases = ", ".join(f"@{alias} (version {version})" for alias, version in sorted(registered.aliases.items()))
    if aliases:
        choices = f"aliases {aliases}: give models:/{name}/VERSION or models:/{name}@ALIAS"
    else:
        choices = f"no alias: give models:/{name}/VERSION"
    return f"Registered model '{name}' has versions {', '.join(map(str, versions)) or 'none'} and {choices}"


def check_output(output: Path) -> None:
    """Refuse an ``output=`` the predictions cannot go to as a CSV file, before the model is fetched and run:
    a folder (written at the end, it failed with IsADirectoryError), or a file whose name says another format
    (``p.json`` received CSV)."""
    if output.is_dir():
        raise UsageError(f"output={output} is a folder; give a file in it, e.g. output={output / 'predictions.csv'}")
    if output.suffix.lower() not in ("", ".csv"):
        raise UsageError(
            f"output={output}: explab-predict writes a CSV table (input, prediction and, for a classifier, each "
            f"class's probability); give a .csv file, e.g. output={output.with_suffix('.csv')}"
        )


def predict(cfg: DictConfig) -> Path:
    import mlflow
    from mlflow.exceptions import MlflowException

    from explab.tracking.model import load_model
    from explab.tracking.store import shown_url

    if not Path(cfg.input).exists():  # before the model is fetched: that can take a while
        raise UsageError(
            f"input={cfg.input} does not exist; give a .npy array, a numeric .csv, a folder of images, or a .txt "
            "file of texts for a text model"
        )
    check_output(Path(cfg.output))
    mlflow.set_tracking_uri(cfg.tracking_uri)
    model_uri = model_uri_of(cfg.model_uri)
    try:
        model = load_model(model_uri)
    except MlflowException as error:
        raise UsageError(
            f"model_uri={model_uri} cannot be loaded from {shown_url(cfg.tracking_uri)}: {first_line(error)}. "
            f"{model_uri_advice(model_uri)}"
        ) from None
    x, names = read_inputs(Path(cfg.input), input_recipe(model))
    try:
        outputs = np.asarray(model.predict(as_signature_takes(x, model)))
    except MlflowException as error:
        # MLflow quotes every input it refused before its reason ("Shape of input (5, 14) does not match ...")
        reason = (str(error).rsplit("Error: ", 1)[-1].strip().splitlines() or ["no reason given"])[0].rstrip(".")
        raise UsageError(
            f"input={cfg.input}: the model refuses these inputs: {reason}. It takes {model.metadata.get_input_schema()}"
        ) from None
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
    paths_from_launch_folder(cfg, files=("input", "output"))
    refuse_unread_additions(cfg, "predict")
    predict(cfg)


def main() -> None:
    """Console script ``explab-predict``."""
    from explab.cli import run_hydra_app

    run_hydra_app(_hydra_main, config_name="predict")


if __name__ == "__main__":
    main()
