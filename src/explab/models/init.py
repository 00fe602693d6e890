"""Weight initialisation schemes a recipe can ask for by name (``model.init``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from explab.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn


def keras_init(module: nn.Module) -> None:
    """Keras' defaults for dense and convolution layers: Glorot-uniform weights, zero biases."""
    # torch here, not above: the config check reads SCHEMES before torch is imported
    from torch import nn

    # the layers Keras initialises with Glorot-uniform weights and zero biases
    keras_layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    for layer in module.modules():
        if isinstance(layer, keras_layers):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


# "default" keeps each PyTorch layer's own initialisation (Kaiming-uniform weights, uniform biases)
SCHEMES: dict[str, Callable[[nn.Module], None] | None] = {"default": None, "keras": keras_init}


def initialise(module: nn.Module, scheme: str) -> None:
    """Apply ``scheme`` to every layer of ``module`` it covers; ``ConfigError`` for an unknown scheme."""
    if scheme not in SCHEMES:
        raise ConfigError("model.init", scheme, f"one of {', '.join(SCHEMES)}")
    apply = SCHEMES[scheme]
    if apply is not None:
        apply(module)
