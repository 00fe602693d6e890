"""The trained model in MLflow's model format: ``runs:/ID/model`` takes raw inputs and predicts.

The model is an MLflow python model (:class:`explab.serving.RawInputModel`): the network rebuilt from the run's
config and weights, with the data module's preprocessing (scaling, normalisation, reshaping, the text
vocabulary) in front of it. ``mlflow models serve -m runs:/ID/model --env-manager local``,
``mlflow.pyfunc.load_model`` and ``explab-predict`` all hand it raw digit pixels, raw images or raw text.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from explab.tracking.params import recordable
from explab.tracking.run import no_download_bars
from explab.tracking.staging import room_to_download, room_to_stage
from explab.utils.logging import get_logger, logger_at_least

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

    from explab.data.base import TensorDataModule
    from explab.models import TaskModule
    from explab.tracking import TrackedRun

log = get_logger(__name__)
MODEL_NAME = "model"


def load_model(model_uri: str) -> Any:
    """``mlflow.pyfunc.load_model``, without the copy of the model MLflow would leave behind.

    MLflow copies the model's files into a fresh temporary folder on every load and never removes it: a copy
    of the model left in /tmp per prediction. Here they go into a folder that is removed once the model is in
    memory (the network and its recipe are read at load).
    """
    import mlflow.pyfunc

    from explab.errors import UsageError
    from explab.serving import DamagedModelError

    # a bar per file of a model of a few small files only fills the console
    with (
        room_to_download(f"The model {model_uri}"),
        tempfile.TemporaryDirectory(prefix="explab-model-") as folder,
        no_download_bars(),
    ):
        try:
            return mlflow.pyfunc.load_model(model_uri, dst_path=folder)
        except DamagedModelError as error:
            raise UsageError(f"The model {model_uri}: {error}") from None


def inference_module(model: TaskModule) -> nn.Module:
    """A CPU copy of the backbone that returns class probabilities (classification) or values (regression)."""
    backbone = getattr(model.backbone, "_orig_mod", model.backbone)  # unwrap torch.compile
    net = copy.deepcopy(backbone).float().cpu().eval()
    if model.best_metric_name == "val/acc_best":
        net = nn.Sequential(net, nn.Softmax(dim=-1))
    return net.eval()


def log_model(
    run: TrackedRun,
    model: TaskModule,
    datamodule: TensorDataModule,
    cfg: DictConfig,
    registered_model_name: str | None = None,
) -> str:
    """Log the network with its input recipe, a raw input example and a signature; returns the model URI.

    Raises:
        StagingError: the temporary folder, where the model's files are written before they reach the store,
            has no room for them.
    """
    import mlflow
    from mlflow.models import infer_signature

    import explab.serving_model_code
    from explab.serving import network_input, outputs, raw_example

    code = model_code(cfg)
    _say_code_moved(run, code)
    recipe = datamodule.input_recipe()
    net = inference_module(model)
    example = raw_example(datamodule.input_example[:4], recipe, datamodule.example_texts())
    with torch.no_grad():
        predicted = outputs(net(torch.as_tensor(network_input(example, recipe))).numpy(), recipe)
    mlflow.set_tracking_uri(run.tracking_uri)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
    with room_to_stage("The run's MLflow model"), tempfile.TemporaryDirectory(prefix="explab-model-") as folder:
        files = {"config": Path(folder) / "config.yaml", "weights": Path(folder) / "weights.pt"}
        files["recipe"] = Path(folder) / "recipe.json"
        files["config"].write_text(OmegaConf.to_yaml(OmegaConf.create(recordable(cfg))))
        # opened here: torch's own file writer reports a full disk as "unexpected pos 64 vs 0", no OSError behind
        with files["weights"].open("wb") as weights:
            torch.save(net.state_dict(), weights)
        files["recipe"].write_text(json.dumps(recipe))
        # MLflow reads the logged model back to validate the input example, and says so at INFO in every run,
        # with a progress bar per small file: no news (its warnings still show)
        with (
            mlflow.start_run(run_id=run.run_id, nested=mlflow.active_run() is not None),
            no_download_bars(),
            logger_at_least("mlflow.pyfunc", logging.WARNING),
        ):
            mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=explab.serving_model_code.__file__,
                artifacts={name: str(path) for name, path in files.items()},
                input_example=example,
                signature=infer_signature(example, predicted),
                pip_requirements=requirements,
                code_paths=code or None,
                registered_model_name=registered_model_name,
            )
    return f"runs:/{run.run_id}/{MODEL_NAME}"


# on a run whose logged model carries a lab's package edited or committed since the run imported it
CODE_MOVED_TAG = "explab.model_code_moved"


def _say_code_moved(run: TrackedRun, code: list[str]) -> None:
    """Warn, and tag the run, when a package the model carries (``code``) changed in its checkout while the
    run trained: MLflow copies the files as they are now, which may not be the code the weights were trained
    with (a lab edits its backbone during a long fit). The run's ``git.PACKAGE.*`` tags and patch record the
    code that trained."""
    from explab.config import project_root
    from explab.tracking.environment import checkouts_moved

    if not code:
        return
    # a package's folder, or a module's file, is named as the package
    moved = checkouts_moved([Path(folder).stem for folder in code], project_root())
    if not moved:
        return
    names = ", ".join(moved)
    run.set_tags({CODE_MOVED_TAG: names})
    log.warning(
        "%s changed in its checkout since this run imported it (a commit or an edit): the logged model carries "
        "it as it is now, which may not be the code its weights were trained with. The run's git.%s.* tags (and "
        "config/git_diff.%s.patch, if any) record the code that trained; with that code checked out, explab-train "
        "reproduce=%s logs a model that matches it",
        names, moved[0], moved[0], run.run_id,
    )  # fmt: skip


def model_code(cfg: DictConfig) -> list[str]:
    """The folder (or file) of each package the network is rebuilt from (a ``_target_`` under ``model``,
    ``optimizer`` or ``scheduler``) that the Python environment does not hold: a lab's own, imported from its
    checkout or ``PYTHONPATH``. MLflow copies them into the model (``code_paths``) and puts them on the path
    where it loads it, so the model loads wherever explab is installed, not only beside the lab. explab itself
    and installed libraries are left out: the model's environment has them."""
    import importlib.util
    import site
    import sysconfig

    from explab.build import NETWORK_KEYS
    from explab.targets import target_packages

    # where the standard library and installed packages live; an editable install's code is elsewhere
    libraries = [sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    environment = {Path(p).resolve() for p in (*libraries, *site.getsitepackages(), site.getusersitepackages())}
    nodes = [cfg[key] for key in NETWORK_KEYS if cfg.get(key) is not None]
    packages = sorted(set().union(*map(target_packages, nodes)) - {"explab"})
    code = []
    for package in packages:
        spec = importlib.util.find_spec(package)
        where = _imported_from(spec) if spec is not None else None
        if where is not None and not any(where.is_relative_to(folder) for folder in environment):
            code.append(str(where))
    return code


def _imported_from(spec: ModuleSpec) -> Path | None:
    """The folder of a package (a namespace package's too: a lab's folder without ``__init__.py``) or the file of
    a module that ``spec`` imports; None for a built-in module, and for a namespace package spread over several
    folders, which MLflow would copy into one folder of one name."""
    if spec.origin not in (None, "built-in", "frozen"):
        place = Path(spec.origin).resolve()
        return place.parent if place.name == "__init__.py" else place
    folders = list(spec.submodule_search_locations or [])
    return Path(folders[0]).resolve() if len(folders) == 1 else None
