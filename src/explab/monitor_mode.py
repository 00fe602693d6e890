"""What follows a validation metric (the checkpoint and early-stopping callbacks, a plateau scheduler), and
which way that metric is better.

``monitor_mode: auto``, the default, reads the way from the metric's name as a sweep's ``direction: auto``
does (``val/loss``: min, ``val/acc``: max): a ``monitor=val/loss`` given without its mode would otherwise keep
the checkpoint with the highest loss and test it as the run's best.
"""

from __future__ import annotations

from omegaconf import DictConfig

from explab.comparison import better_by_name

AUTO = "auto"
MODES = ("min", "max", AUTO)


def after_validation(metric: str) -> bool:
    """Whether ``metric`` is a validation metric (``val/``): Lightning holds it only once a validation loop has
    run, so a fit that does not validate never has it, and one that validates every N epochs or batches has
    none before the first."""
    return str(metric).startswith("val/")


def mode_by_name(metric: str) -> str | None:
    """``"min"`` or ``"max"`` where ``metric``'s name says which way is better; None where it does not."""
    return {"minimize": "min", "maximize": "max", None: None}[better_by_name(metric)]


def followers(cfg: DictConfig) -> dict[str, DictConfig]:
    """Each config node that follows a metric (has a ``monitor``), by its key: ``callbacks.NAME`` and
    ``scheduler``."""
    nodes = {f"callbacks.{name}": node for name, node in (cfg.get("callbacks") or {}).items()}
    nodes["scheduler"] = cfg.get("scheduler")
    return {key: node for key, node in nodes.items() if isinstance(node, DictConfig) and node.get("monitor")}


def settle_modes(cfg: DictConfig) -> None:
    """Replace, in place, ``auto`` by ``min`` or ``max`` in each node that follows a metric and in the root's
    ``monitor_mode``, from the followed metric's name (``validation.check_monitor_modes`` refused a name that
    says neither way). What is built from ``cfg`` then gets, and the run records, the mode it uses: a run of
    ``auto`` compares equal to one that said ``max`` for ``val/acc``.
    """
    # the followers first: one following a metric of its own in ``${monitor_mode}`` would take the root's mode
    for node in followers(cfg).values():
        if node.get("mode") == AUTO:
            node.mode = mode_by_name(str(node.monitor))
    named = mode_by_name(str(cfg.get("monitor") or ""))
    if cfg.get("monitor_mode") == AUTO and named is not None:
        cfg.monitor_mode = named
