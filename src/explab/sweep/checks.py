"""Checks a sweeper runs before its first trial, so a typo costs seconds, not a night of failed trials."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from explab.errors import UsageError


def check_job_config(config: DictConfig, metric: str | list[str] | None) -> None:
    """The sweeper's pre-flight check for explab's train: the job's values are valid and ``metric`` (one name
    or one per objective) is logged."""
    from explab.validation import check_machine, validate_config

    validate_config(config)
    if "BasicLauncher" in str(OmegaConf.select(config, "hydra.launcher._target_", default="")):
        check_machine(config)  # its jobs train on this machine; a cluster's launcher sends them elsewhere
    for name in [metric] if isinstance(metric, str) else list(metric or []):
        check_objective(config, name)


def check_objective(config: DictConfig, metric: str) -> None:
    """explab's train returns every metric its task module logs; is ``metric`` one of them?

    The task module is built from the job's config (``task_metric_names``: no data is read, no weights are
    made), so the names are those it will log.
    """
    from explab.build import task_class, task_metric_names
    from explab.fit import JOB_METRICS

    task = task_class(config)
    if task is None:
        return
    names = task_metric_names(config) | set(JOB_METRICS)
    if not config.get("test", True):
        names = {name for name in names if not name.startswith("test/")}
    if metric not in names:
        raise UsageError(
            f"the sweep optimises '{metric}', which {task.__name__} never logs"
            f"{' with test=false' if metric.startswith('test/') else ''}. "
            f"Choose one of: {', '.join(sorted(names))} (hydra.sweeper.metric / optimized_metric)"
        )
    monitor = config.get("optimized_metric")
    if monitor and monitor not in names:
        raise UsageError(
            f"optimized_metric='{monitor}' is not logged by {task.__name__}; choose one of: {', '.join(sorted(names))}"
        )
