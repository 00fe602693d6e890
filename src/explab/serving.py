"""The logged model as MLflow serves it: raw inputs in, predictions out, the data module's preprocessing inside.

A data module describes its preprocessing as an *input recipe* (``TensorDataModule.input_recipe``), a small
JSON record logged with the model:

- ``{"kind": "numeric", "raw_shape": [8, 8], "scale": 16, "mean": ..., "std": ..., "shape": [1, 8, 8]}``:
  a raw value ``v`` (a pixel of 0..16 here, 0..255 for MNIST, a feature in its own unit) becomes
  ``(v / scale - mean) / std``, reshaped from ``raw_shape`` to the network's ``shape``; ``columns`` (tabular
  data) names the features, which ``explab-predict`` finds by name in a table's header; ``channels_last``
  moves the last axis of a raw colour image to the front; ``target_mean`` and ``target_std`` turn a
  regression output back into the target's unit;
- ``{"kind": "text", "index": ..., "max_len": ...}``: raw text, tokenised and encoded with the training
  vocabulary;
- ``{"kind": "tensor", "dtype": "float32"}``: the inputs are already what the network takes (a data module
  that says nothing).

``RawInputModel`` rebuilds the network from the run's config and its weights (read with
``weights_only=True``) on the CPU, so ``mlflow models serve``, ``mlflow.pyfunc.load_model`` and
``explab-predict`` work on any machine.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch
from mlflow.pyfunc import PythonModel

from explab.errors import UsageError

TEXT_COLUMN = "text"
# Chebyshev's inequality: whatever a feature's distribution, at most 1/k^2 of it lies k standard deviations or
# more from its mean (a sixteenth for 4). A column whose inputs mostly lie that far was not drawn the way the
# training data was: scaled or standardised before it came (the model does that itself), or another feature's
FAR_IN_STDS = 4.0
# pixels this far (a fraction of the scale) past 0..scale are still raw: round-off of a recipe run backwards
# (the logged input example), or of resampling an image
PIXEL_SLACK = 0.01
# rows per forward pass: the network's activations grow with the rows it takes at once, so a large folder of
# images in one pass could take more memory than the host has
ROWS_PER_PASS = 1024

# a served model logs where its server does, whatever rank a launcher left in the environment
log = logging.getLogger(__name__)


def network_input(raw: Any, recipe: dict[str, Any]) -> np.ndarray:
    """What the network takes, from raw inputs as the recipe describes them."""
    kind = recipe.get("kind", "tensor")
    if kind == "text":
        from explab.data.text import Vocabulary, tokenize

        texts = _texts(raw)
        return Vocabulary.from_dict(recipe).encode([tokenize(t) for t in texts], recipe["max_len"])
    if kind != "numeric":
        return np.asarray(raw, dtype=recipe.get("dtype", "float32"))
    x = np.asarray(raw, dtype=np.float32)
    x = x.reshape(len(x), *recipe["raw_shape"])
    if recipe.get("channels_last"):
        x = np.moveaxis(x, -1, 1)
    x = (x / recipe["scale"] - np.asarray(recipe["mean"], dtype=np.float32)) / np.asarray(
        recipe["std"], dtype=np.float32
    )
    return x.reshape(len(x), *recipe["shape"]).astype(np.float32)


def outputs(y: np.ndarray, recipe: dict[str, Any]) -> np.ndarray:
    """Class probabilities as they come; a regression value in the target's own unit."""
    if "target_mean" in recipe:
        return y * recipe["target_std"] + recipe["target_mean"]
    return y


def raw_example(network_inputs: torch.Tensor, recipe: dict[str, Any], texts: list[str] | None = None) -> Any:
    """Raw inputs that give ``network_inputs``: the recipe run backwards (the model's input example)."""
    kind = recipe.get("kind", "tensor")
    if kind == "text":
        import pandas as pd

        return pd.DataFrame({TEXT_COLUMN: list(texts or ["a review"])})
    # float64: raw values come as Python or numpy numbers (JSON, explab-predict's files), and MLflow's schema
    # lets ints and float32 widen to it, while it never narrows float64 to a float32 signature
    if kind != "numeric":
        x = network_inputs.detach().cpu().numpy()
        return x.astype(np.float64) if x.dtype.kind == "f" else x
    x = network_inputs.detach().cpu().numpy().astype(np.float64)
    raw_shape = list(recipe["raw_shape"])
    if recipe.get("channels_last"):
        chw = x.reshape(len(x), raw_shape[-1], *raw_shape[:-1])
        unscaled = chw * np.asarray(recipe["std"]) + np.asarray(recipe["mean"])
        return np.moveaxis(unscaled, 1, -1) * recipe["scale"]
    unscaled = x.reshape(len(x), *recipe["shape"]) * np.asarray(recipe["std"]) + np.asarray(recipe["mean"])
    return (unscaled * recipe["scale"]).reshape(len(x), *raw_shape)


def _texts(raw: Any) -> list[str]:
    if hasattr(raw, "columns"):  # a DataFrame, as MLflow hands over a column-based input
        column = TEXT_COLUMN if TEXT_COLUMN in raw.columns else raw.columns[0]
        return [str(t) for t in raw[column]]
    return [str(t) for t in np.asarray(raw).reshape(-1)]


class RawInputModel(PythonModel):
    """An explab network with its input recipe, as an MLflow python model.

    Artifacts: ``config`` (the run's resolved config, from which the network is rebuilt), ``weights`` (its
    state dict) and ``recipe`` (the input recipe).
    """

    def load_context(self, context: Any) -> None:
        from omegaconf import OmegaConf

        from explab.build import NETWORK_KEYS, build_model
        from explab.targets import check_targets
        from explab.tracking.model import inference_module

        cfg = OmegaConf.load(context.artifacts["config"])
        try:
            # a lab's package the model does not carry (one logged before models took their lab's code along)
            # would otherwise be Hydra's bare "Error locating target"
            check_targets(cfg, under=NETWORK_KEYS)
        except UsageError as error:
            raise UsageError(f"the model's network cannot be rebuilt here: {error}") from None
        self.network = inference_module(build_model(cfg))  # type: ignore[arg-type]
        self.network.load_state_dict(model_weights(context.artifacts["weights"]))
        self.network.eval()
        with open(context.artifacts["recipe"]) as handle:
            self.recipe = json.load(handle)

    # no type hints, and no wrapping: MLflow would check hints against the input; the signature logged with the
    # model says what it takes (arrays, or a text column), which hints cannot express
    _skip_type_hint_validation = True

    def predict(self, context, model_input, params=None):
        """Outputs for every row of ``model_input``, computed ``ROWS_PER_PASS`` rows at a time so that memory
        stays that of one pass however many rows come (a folder of images, a large request).

        Raw numeric inputs off the training data's scale are refused or warned of (``check_training_scale``)."""
        numeric = self.recipe.get("kind") == "numeric" and len(model_input)
        if numeric and (warning := check_training_scale(np.asarray(model_input, np.float64), self.recipe)) is not None:
            log.warning(warning)
        x = torch.as_tensor(network_input(model_input, self.recipe))
        with torch.inference_mode():
            y = torch.cat([self.network(rows) for rows in x.split(ROWS_PER_PASS)]) if len(x) else self.network(x)
        return outputs(y.numpy(), self.recipe)


def check_training_scale(x: np.ndarray, recipe: dict[str, Any]) -> str | None:
    """Whether raw numeric inputs ``x`` are on the scale the model was trained on, as the numeric recipe's
    ``scale``, ``mean`` and ``std`` tell.

    Raises:
        InputScaleError: image pixels outside ``0..scale`` (pixels of 0..255 for digits of 0..16): no raw image
            of the training data holds them, and the model's answers would mean nothing.

    Returns:
        A warning for what may still be right but most likely is not: images whose every pixel lies in 0..1
        (divided by their scale already), and table columns whose inputs mostly lie ``FAR_IN_STDS`` standard
        deviations or more from the training mean (standardised already, or given in another column's
        place); None when nothing looks off.
    """
    scale = float(recipe["scale"])
    if len(recipe["raw_shape"]) > 1:  # images
        low, high = float(x.min()), float(x.max())
        if low < -PIXEL_SLACK * scale or high > (1 + PIXEL_SLACK) * scale:
            raise InputScaleError(
                f"the inputs' values run from {low:g} to {high:g}, but this model takes raw pixels of 0..{scale:g} "
                f"and scales them itself; give them on that scale (pixels of 0..255 times {scale / 255:g}), or "
                "give explab-predict a folder of image files, which it puts on that scale"
            )
        if high <= 1 < scale:
            return (
                f"every value of the inputs lies in 0..1, but this model takes raw pixels of 0..{scale:g} and "
                f"scales them itself: if they were divided by {scale:g} already, multiply them back, or the model "
                "sees nearly black images"
            )
        return None
    rows = x.reshape(len(x), -1)
    # one mean and deviation per column, or one for them all
    mean, std = (np.broadcast_to(np.asarray(recipe[key], np.float64), rows.shape[1:]) for key in ("mean", "std"))
    z = (rows / scale - mean) / std
    names = recipe.get("columns") or [f"column {k + 1}" for k in range(z.shape[1])]
    far = [k for k in range(z.shape[1]) if np.median(np.abs(z[:, k])) >= FAR_IN_STDS]
    if not far:
        return None
    described = ", ".join(
        f"{names[k]} (median {np.median(rows[:, k]):.4g}; training mean {mean[k] * scale:.4g}, sd {std[k] * scale:.4g})"
        for k in far
    )
    return (
        f"most inputs lie {FAR_IN_STDS:g} standard deviations or more from the training data in {described}. "
        f"This model takes the features {', '.join(names)} in that order, each in its own unit as the training "
        "data held it, and standardises them itself: features scaled or standardised already, or in another "
        "order, give meaningless predictions"
    )


class InputScaleError(UsageError):
    """Raw inputs that cannot be on the scale the model was trained on (pixels beyond its raw scale)."""


class DamagedModelError(Exception):
    """A logged model whose files cannot be read: cut short, or damaged."""


def model_weights(path: str) -> dict[str, torch.Tensor]:
    """The state dict a logged model keeps in ``path``, read with ``weights_only=True``.

    Raises:
        DamagedModelError: the file cannot be read (cut short, or damaged), with the reason and what to do;
            ``explab.tracking.model.load_model`` names the model it belongs to.
    """
    import pickle

    from explab.errors import first_sentence

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise DamagedModelError(
            f"its weights cannot be read ({first_sentence(error)}): its copy in the store was cut short or damaged "
            "(a copy stopped partway, a full disk). Restore the store's artifacts from a backup, or train the run "
            "again with explab-train reproduce=RUN_ID log_model=true"
        ) from None
