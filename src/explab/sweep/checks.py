"""Checks a sweeper runs before its first trial, so a typo costs seconds, not a night of failed trials."""

from __future__ import annotations

from hydra.utils import get_class
from omegaconf import DictConfig


def check_objective(config: DictConfig, metric: str) -> None:
    """explab's train returns every metric its task module logs; is ``metric`` one of them?

    The task module is built from the job's config (no data is read), so the names are those it will log.
    """
    from explab.build import build_model
    from explab.models import TaskModule

    target = config.get("model", {}).get("_target_")
    task = get_class(target) if target else None
    if task is None or not issubclass(task, TaskModule):
        return
    names = build_model(config).metric_names()
    if metric not in names:
        raise ValueError(
            f"the sweep optimises '{metric}', which {task.__name__} never logs. "
            f"Choose one of: {', '.join(sorted(names))} (hydra.sweeper.metric / optimized_metric)"
        )
    monitor = config.get("optimized_metric")
    if monitor and monitor not in names:
        raise ValueError(
            f"optimized_metric='{monitor}' is not logged by {task.__name__}; choose one of: {', '.join(sorted(names))}"
        )
