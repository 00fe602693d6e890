"""Checks a sweeper runs before its first trial, so a typo costs seconds, not a night of failed trials."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from explab.errors import UsageError, first_line
from explab.sweep.objectives import reported_each_epoch

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from explab.sweep.space import Condition


NO_VALIDATION = (
    " when the fit does not validate (data.val_fraction=0 or data.val_size=0 train on every training sample, "
    "trainer.limit_val_batches=0 skips validation): keep a validation split to search on"
)


def check_job_config(config: DictConfig, metric: str | list[str] | None) -> None:
    """The sweeper's pre-flight check for explab's train: the job's values are valid and ``metric`` (one name
    or one per objective) is logged."""
    from explab.machine_checks import check_machine
    from explab.validation import validate_config

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
    from explab.build import task_class, task_metric_names, validates
    from explab.fit import JOB_METRICS

    task = task_class(config)
    if task is None:
        return
    names = task_metric_names(config) | set(JOB_METRICS)
    # a stage the job skips logs nothing: every trial would train, then fail for want of its objective
    skipped: dict[str, str] = {}  # the stage's prefix -> why it is skipped
    if not config.get("test", True):
        skipped["test/"] = " with test=false"
    if not validates(config):
        skipped["val/"] = NO_VALIDATION
    names = {name for name in names if not name.startswith(tuple(skipped))}
    if metric not in names:
        why = next((why for stage, why in skipped.items() if metric.startswith(stage)), "")
        raise UsageError(
            f"the sweep optimises '{metric}', which {task.__name__} never logs{why}. "
            f"Choose one of: {', '.join(sorted(names))} (hydra.sweeper.metric / optimized_metric)"
        )
    monitor = config.get("optimized_metric")
    if monitor and monitor not in names:
        raise UsageError(
            f"optimized_metric='{monitor}' is not logged by {task.__name__}; choose one of: {', '.join(sorted(names))}"
        )


def check_space_composes(
    compose: Callable[[list[str]], DictConfig],
    space: Mapping[str, BaseDistribution],
    conditions: Mapping[str, Condition],
    fixed: list[str],
) -> None:
    """Every searched key is one the job's config has, and every choice of a config group is one of its
    options: a typo in the search space stops the sweep before its study exists, rather than failing every
    trial and leaving a study whose definition holds the typo.

    ``compose`` builds the job's config from overrides. Each parameter is composed with its lowest value or
    each of its choices, beside the values its condition (``when:``) asks of the parameters it depends on:
    ``optimizer.momentum`` exists only under the optimizer it is searched for.
    """
    from optuna.distributions import CategoricalDistribution

    from explab.sweep.space import as_override

    for name, distribution in space.items():
        given = _condition_overrides(name, conditions)
        # a number's bounds are Optuna's to check; its key, and each choice of a config group, are Hydra's
        values = distribution.choices if isinstance(distribution, CategoricalDistribution) else (_lowest(distribution),)
        for value in values:
            try:
                compose([*fixed, *given.values(), as_override(name, value)])
            except Exception as error:
                raise UsageError(_why_not_composed(name, value, error, lambda: compose(fixed))) from None


def metric_needed(optimized_metric: str | None) -> str:
    """What to say when a sweep of a job that returns every metric its run logs (explab's train: the one
    ``hydra.sweeper.check`` is set for) names none to optimise; every trial would train, then fail."""
    from explab.comparison import lower_is_better

    example = optimized_metric or "val/acc_best"
    direction = "minimize" if lower_is_better(example) else "maximize"
    whose = ", the config's optimized_metric" if optimized_metric else ""
    return (
        "the sweep names no metric to optimise, and each job returns every metric its run logs: set "
        f"hydra.sweeper.metric and its direction (hydra.sweeper.metric={example} hydra.sweeper.direction={direction}"
        f"{whose}), or use a search config that sets both (hparams_search=optuna searches any experiment)"
    )


def what_goes_unrecorded(storage: Any, mlflow: Any) -> str | None:
    """What an explab sweep chosen as ``hydra/sweeper=explab_optuna`` alone, without the wiring of
    ``hparams_search=optuna``, does without; None when it has both."""
    missing = []
    if not storage:
        missing.append(
            "hydra.sweeper.storage is unset: the study is this command's own, and running it again starts anew"
        )
    if not mlflow:
        missing.append("hydra.sweeper.mlflow is unset: no MLflow parent run records the study")
    if not missing:
        return None
    return "; ".join(missing) + " (hparams_search=optuna sets both for any experiment)"


def unpruned_objective(metrics: tuple[str, ...], pruner: Any) -> str | None:
    """Why a pruner set for explab's train will prune nothing: its jobs report their one objective after each
    validation epoch, and a metric known only after the fit (``test/acc``, ``perf/fit_seconds``) has no such
    value. None when the pruner can follow the objective, or there is no pruner."""
    if not pruner or len(metrics) != 1 or reported_each_epoch(metrics[0]):
        return None
    return (
        f"hydra.sweeper.pruner judges a trial by its objective after each validation epoch, and {metrics[0]} is "
        "known only once the fit is over: no trial will be pruned. Optimise a val/ metric to prune, or say so "
        "with hydra/sweeper/pruner=none"
    )


def selected_on_test(metrics: tuple[str, ...]) -> str | None:
    """Why a search whose objective is a ``test/`` metric cannot be reported honestly: it chooses its
    hyperparameters by the test set, so the winner's test value overstates how the winner does on data it was
    not chosen on (the more trials, the more), and no untouched set is left to measure that. None for an
    objective the test set does not decide."""
    chosen_by = [metric for metric in metrics if metric.startswith("test/")]
    if not chosen_by:
        return None
    return (
        f"the search chooses its hyperparameters by {', '.join(chosen_by)}, a test-set metric: the best trial's "
        "test values then overstate how it does on data it was not chosen on (the more trials, the more), and "
        "no untouched test set is left to say. Optimise a validation metric (val/acc_best, val/loss) and read "
        "the winner's test/ metrics"
    )


def selected_by_seed(searched: Iterable[str], seed_key: str, grid: bool) -> str | None:
    """Why a search that draws the seed chooses luck: a seed is not a setting that carries over to other data or
    another run, so the best trial is partly the seed that happened to do best, and its value overstates what
    its configuration does over seeds. None where the seed is not searched, or where a grid runs every seed
    (seeds run in parallel, as a plain multirun would run them)."""
    if grid or seed_key not in searched:
        return None
    return (
        f"the search draws {seed_key} as a hyperparameter: the best trial is then partly the luckiest seed, and "
        "its value overstates what its configuration does on another. Keep one seed and train the best "
        "configurations over seeds with hydra.sweeper.replicates=3, or run every seed as a grid "
        "(hydra/sweeper/sampler=grid)"
    )


def _lowest(distribution: BaseDistribution) -> float:
    from optuna.distributions import FloatDistribution, IntDistribution

    assert isinstance(distribution, FloatDistribution | IntDistribution), distribution
    return distribution.low


def _condition_overrides(name: str, conditions: Mapping[str, Condition]) -> dict[str, str]:
    """The overrides that make ``name``'s condition hold (the first value it allows of each parameter it
    names, and theirs in turn), by key."""
    from explab.sweep.space import as_override

    given: dict[str, str] = {}
    condition = conditions.get(name)
    for parent, values in (condition.requires if condition else {}).items():
        given.update(_condition_overrides(parent, conditions))
        given[parent] = as_override(parent, values[0])
    return given


def _why_not_composed(name: str, value: object, error: Exception, base: Callable[[], DictConfig]) -> str:
    from hydra.errors import MissingConfigException

    from explab.cli import did_you_mean

    said = str(error)
    if isinstance(error, MissingConfigException):
        # Hydra lists the group's options one per tab-indented line, then its config search path
        options = [line.strip() for line in said.split("Config search path:")[0].splitlines() if line.startswith("\t")]
        return (
            f"the search space draws {name}={value}, which is not a config of {name.replace('.', '/')}/; "
            f"its options: {', '.join(options)}"
        )
    if said.startswith("Could not override"):
        return (
            f"the search space sets {name}, which the job's config does not have.{did_you_mean(base(), name)} "
            "Search a key of the config (hydra.sweeper.params or a sweep override)"
        )
    return f"the search space's {name}={value} does not compose: {first_line(error)}"
