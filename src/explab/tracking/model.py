"""The trained model in MLflow's model format, so ``mlflow.pyfunc.load_model("runs:/ID/model")`` predicts."""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from explab.utils.environment import variables_restored

if TYPE_CHECKING:
    from explab.models import TaskModule
    from explab.tracking import TrackedRun

MODEL_NAME = "model"
# MLflow loads a pytorch model onto CUDA whenever a GPU is visible, and a program exported on the CPU (its
# default "pt2" format) then fails to load; explab's logged models are CPU programs, loaded on the CPU
DEVICE_VARIABLE = "MLFLOW_DEFAULT_PREDICTION_DEVICE"


def load_model(model_uri: str) -> Any:
    """``mlflow.pyfunc.load_model`` on the CPU, which works on GPU machines too (see ``DEVICE_VARIABLE``).

    MLflow copies the model's files into a fresh temporary folder on every load and never removes it: a copy
    of the model left in /tmp per prediction. Here they go into a folder that is removed once the model is in
    memory (the pytorch flavour reads everything at load).
    """
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="explab-model-") as folder:
        return mlflow.pyfunc.load_model(model_uri, dst_path=folder, model_config={"device": "cpu"})


@contextlib.contextmanager
def _predicting_on_cpu() -> Iterator[None]:
    """MLflow checks the input example by loading the model it just wrote: on the CPU, as users will."""
    with variables_restored(DEVICE_VARIABLE):
        os.environ[DEVICE_VARIABLE] = "cpu"
        yield


def inference_module(model: TaskModule) -> nn.Module:
    """A CPU copy of the backbone that returns class probabilities (classification) or values (regression)."""
    backbone = getattr(model.backbone, "_orig_mod", model.backbone)  # unwrap torch.compile
    net = copy.deepcopy(backbone).float().cpu().eval()
    if model.best_metric_name == "val/acc_best":
        net = nn.Sequential(net, nn.Softmax(dim=-1))
    return net.eval()


def log_model(
    run: TrackedRun, model: TaskModule, example: torch.Tensor, registered_model_name: str | None = None
) -> str:
    """Log the inference module with an input example and signature; returns the model URI of the run."""
    import mlflow
    from mlflow.models import infer_signature

    net = inference_module(model)
    x = example[:4].detach().cpu()
    with torch.no_grad():
        y = net(x).numpy()
    mlflow.set_tracking_uri(run.tracking_uri)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
    with mlflow.start_run(run_id=run.run_id, nested=mlflow.active_run() is not None), _predicting_on_cpu():
        mlflow.pytorch.log_model(
            net,
            name=MODEL_NAME,
            input_example=x.numpy(),
            signature=infer_signature(x.numpy(), y),
            pip_requirements=requirements,
            registered_model_name=registered_model_name,
        )
    return f"runs:/{run.run_id}/{MODEL_NAME}"
