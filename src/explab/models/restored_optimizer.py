"""The optimizer and scheduler state of a checkpoint, given the optimizer settings a resume changes.

Lightning restores an optimizer's param groups from the checkpoint, hyperparameters included: a run resumed
with ``optimizer.lr=1e-4`` (or another ``weight_decay``) would go on training with the checkpoint's values while
its record says the new ones. :func:`apply_changed_settings` edits the checkpoint before Lightning restores
from it: the moments and step counts stay, the changed settings replace the saved ones, and a new learning
rate rescales every rate a schedule keeps, so the rest of the run follows the schedule a run trained with
the new rate from the start would be on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# a param group's rates: the current one, and the anchors a one-cycle schedule interpolates between
GROUP_RATES = ("lr", "initial_lr", "max_lr", "min_lr")
NOT_SETTINGS = ("_target_", "_partial_", "params")


def changed_settings(then: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer keywords of ``now`` whose values differ from ``then`` (the checkpoint's optimizer config)."""
    return {
        key: value
        for key, value in now.items()
        if key not in NOT_SETTINGS and _plain(then.get(key)) != _plain(value) and then.get(key) is not None
    }


def apply_changed_settings(checkpoint: dict[str, Any], changed: Mapping[str, Any], then: Mapping[str, Any]) -> None:
    """Write ``changed`` (from :func:`changed_settings`) into every param group of ``checkpoint``'s optimizer
    states; a changed ``lr`` scales the group's rates and the schedulers' ``base_lrs`` by ``lr`` over ``then``'s
    (towards a cosine's ``eta_min`` floor, which stays)."""
    ratio = float(changed["lr"]) / float(then["lr"]) if "lr" in changed else 1.0
    schedulers = checkpoint.get("lr_schedulers") or []
    for state in checkpoint.get("optimizer_states") or []:
        for index, group in enumerate(state.get("param_groups", [])):
            for key, value in changed.items():
                if key != "lr" and key in group:
                    group[key] = tuple(_plain(value)) if isinstance(group[key], tuple) else _plain(value)
            if ratio != 1.0:
                base, floor = _schedule_of(schedulers, index, group)
                for key in GROUP_RATES:
                    if key in group:
                        group[key] = _rescaled(float(group[key]), base, floor, ratio)
    if ratio != 1.0:
        for scheduler in schedulers:
            floor = float(scheduler.get("eta_min", 0.0))
            bases = list(scheduler.get("base_lrs", []))
            if "_last_lr" in scheduler and len(bases) == len(scheduler["_last_lr"]):
                scheduler["_last_lr"] = [
                    _rescaled(float(r), b, floor, ratio) for r, b in zip(scheduler["_last_lr"], bases, strict=True)
                ]
            if bases:
                scheduler["base_lrs"] = [b * ratio for b in bases]


def _schedule_of(schedulers: list[dict[str, Any]], index: int, group: Mapping[str, Any]) -> tuple[float, float]:
    """The rate group ``index`` is scheduled from and the floor it is scheduled towards (a cosine's
    ``eta_min``); the group's own rate and no floor without a scheduler."""
    for scheduler in schedulers:
        bases = scheduler.get("base_lrs") or []
        if index < len(bases):
            return float(bases[index]), float(scheduler.get("eta_min", 0.0))
    return float(group.get("lr", 0.0)), 0.0


def _rescaled(rate: float, base: float, floor: float, ratio: float) -> float:
    """``rate``, on a schedule that runs from ``base`` to ``floor``, on the same schedule from ``base * ratio``."""
    if base == floor:
        return rate * ratio
    return floor + (rate - floor) * (base * ratio - floor) / (base - floor)


def _plain(value: Any) -> Any:
    """A config value as plain Python (a betas ``ListConfig`` as a list), so a tuple and a list compare equal."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, ListConfig | DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    return list(value) if isinstance(value, tuple | list) else value
