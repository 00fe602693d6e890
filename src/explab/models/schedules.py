"""Which arguments of a learning-rate scheduler explab fits to the trainer (a one-cycle's ``total_steps``, a
cosine's ``T_max``), read from the scheduler's signature: no torch import, so config checks can ask."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

FILLED_FROM_TRAINER = ("total_steps", "T_max")


def filled_from_trainer(scheduler: Callable[..., Any], given: Any) -> list[str]:
    """The arguments of ``scheduler`` that ``models.tasks.build_scheduler`` fills in from the trainer: those of
    ``FILLED_FROM_TRAINER`` it takes and ``given`` (its configured keywords) leaves unset."""
    params = inspect.signature(scheduler).parameters
    return [name for name in FILLED_FROM_TRAINER if name in params and given.get(name) is None]


def configured_schedule(config: DictConfig) -> tuple[str, list[str]]:
    """A composed config's scheduler target and the arguments fitted to the trainer for it; ``("", [])``
    without a scheduler, and no arguments for a target that cannot be found (building the model names it)."""
    from hydra.utils import get_method

    node = config.get("scheduler")
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not isinstance(target, str):
        return "", []
    try:
        return target, filled_from_trainer(get_method(target), node)
    except Exception:
        return target, []
