"""``scheduler=plateau``: torch's ReduceLROnPlateau, handed to Lightning with the metric it follows."""

from __future__ import annotations

from typing import Any, Literal, cast

import torch

from explab.monitor_mode import AUTO, mode_by_name


def reduce_lr_on_plateau(
    optimizer: torch.optim.Optimizer, monitor: str, mode: str = AUTO, **settings: Any
) -> dict[str, Any]:
    """A ``ReduceLROnPlateau`` of ``optimizer`` made with ``settings`` (factor, patience, ...), as the Lightning
    scheduler config that steps it with ``monitor``'s value after each validation epoch.

    The scheduler alone cannot be returned: Lightning refuses a plateau scheduler whose config names no metric,
    and the metric (the run's ``monitor``) is not one of torch's arguments. ``mode`` ``auto`` is what
    ``monitor``'s name says is better (``build_job`` settles it in the config before; a model built on its own
    from a composed config gets the same).

    Raises:
        ValueError: ``auto`` for a metric whose name says neither way (config validation refuses it first).
    """
    if mode == AUTO:
        named = mode_by_name(monitor)
        if named is None:
            raise ValueError(
                f"scheduler.mode=auto: the name {monitor} does not say which way is better; set min or max"
            )
        mode = named
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=cast(Literal["min", "max"], mode), **settings
    )
    return {"scheduler": scheduler, "monitor": monitor, "interval": "epoch"}
