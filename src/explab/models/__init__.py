"""Models: backbones (plain ``nn.Module``) and the task modules that train them.

The classes load on first use (configs name them as ``explab.models.ConvNet``): the light modules of this
package (``schedules``, ``init``) serve the config check, which answers a mistyped value before torch and
Lightning are imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from explab.models.backbones import MLP, BagOfNgrams, ConvNet, TextRNN
    from explab.models.lazy_adam import LazyAdam
    from explab.models.tasks import ClassificationTask, RegressionTask, TaskModule

_HOMES = {
    "MLP": "explab.models.backbones",
    "BagOfNgrams": "explab.models.backbones",
    "ConvNet": "explab.models.backbones",
    "TextRNN": "explab.models.backbones",
    "LazyAdam": "explab.models.lazy_adam",
    "ClassificationTask": "explab.models.tasks",
    "RegressionTask": "explab.models.tasks",
    "TaskModule": "explab.models.tasks",
}

__all__ = [
    "MLP",
    "BagOfNgrams",
    "ClassificationTask",
    "ConvNet",
    "LazyAdam",
    "RegressionTask",
    "TaskModule",
    "TextRNN",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
