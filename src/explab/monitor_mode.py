"""Which way a followed metric is better, for the callbacks that keep the best checkpoint or stop early.

``monitor_mode: auto``, the default, reads it from the metric's name as a sweep's ``direction: auto`` does
(``val/loss``: min, ``val/acc``: max): a ``monitor=val/loss`` given without its mode would otherwise keep the
checkpoint with the highest loss and test it as the run's best.
"""

from __future__ import annotations

from omegaconf import DictConfig

from explab.comparison import better_by_name

AUTO = "auto"
MODES = ("min", "max", AUTO)


def mode_by_name(metric: str) -> str | None:
    """``"min"`` or ``"max"`` where ``metric``'s name says which way is better; None where it does not."""
    return {"minimize": "min", "maximize": "max", None: None}[better_by_name(metric)]


def settle_modes(cfg: DictConfig) -> None:
    """Replace, in place, ``auto`` by ``min`` or ``max`` in the root's ``monitor_mode`` and in each callback
    config that follows a metric, from that metric's name (``check_monitor_modes`` refused a name that says
    neither way). The run then records, and its callbacks and checkpoints keep, the mode they used: a run of
    ``auto`` compares equal to one that said ``max`` for ``val/acc``.
    """
    # callbacks first: one that follows a metric of its own in ``${monitor_mode}`` would take the root's mode
    for node in (cfg.get("callbacks") or {}).values():
        if isinstance(node, DictConfig) and node.get("monitor") and node.get("mode") == AUTO:
            node.mode = mode_by_name(str(node.monitor))
    monitor = cfg.get("monitor")
    if cfg.get("monitor_mode") == AUTO and monitor and mode_by_name(str(monitor)):
        cfg.monitor_mode = mode_by_name(str(monitor))
