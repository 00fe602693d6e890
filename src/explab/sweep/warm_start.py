"""Warm starts: what earlier searches learnt, given to a new study before its first trial.

A source is an earlier Optuna study (any storage URL and study name: its COMPLETE and PRUNED trials) or an
MLflow experiment (its FINISHED runs). Each point whose parameters fall inside the new search space is added
to the new study in its state, with its objective values or, pruned, the values it reported per epoch
(Optuna's ``add_trial``): the sampler learns from it, a proposal that repeats a COMPLETE one is told its
values (``skip_repeats``), and it is never trained again or counted towards ``n_trials``. The pruner does not
see them: a trial is judged against the trials this study trained (``explab.sweep.pruner``). Parameters the new
space does not search are ignored, so the sources should have run with the same fixed settings; a study's
trials that ran under other fixed overrides are added with a warning naming them. A parameter the new space
searches and a study's trial did not (a widened space, or a condition of the source's that did not hold) had
the value its job's config gave it: the source's fixed override of it, else the value the new sweep's config
has. Points outside the space are skipped and counted. Each source is added once per study, so resuming the
sweep adds nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from explab.errors import UsageError
from explab.sweep import REPEATS_ATTR, WARM_START_ATTR
from explab.sweep.space import Condition, possible
from explab.tracking.params import RESUMED_WITH_TAG
from explab.utils.logging import get_logger

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

    from explab.sweep.objectives import Objectives

log = get_logger(__name__)

SOURCES_ATTR = "explab.warm_start_sources"  # on the study: the sources already added, with their counts
ENQUEUED_ATTR = "explab.enqueued"  # on the study: hydra.sweeper.enqueue was queued


@dataclass(frozen=True)
class Point:
    """One finished evaluation of a source: its parameters, objective values (None for a pruned trial, which
    keeps the values it reported per epoch) and where it came from."""

    params: Mapping[str, Any]
    values: Sequence[float] | None
    origin: str
    intermediate: Mapping[int, float] = field(default_factory=dict)
    # the source's fixed overrides, by key: what a parameter it did not search was set to
    fixed: Mapping[str, str] = field(default_factory=dict)


# fixed overrides that say where a sweep ran or how fast, not what its trials computed
_PLACE_OVERRIDES = ("paths.", "hydra.")


def _by_key(overrides: Sequence[str]) -> dict[str, str]:
    """``key=value`` overrides as {key: value} (``~key`` deletions left out)."""
    from explab.config import override_key

    return {override_key(o): o.partition("=")[2] for o in overrides if not o.startswith("~")}


def _other_settings(source_fixed: Sequence[str], fixed: Sequence[str]) -> list[str]:
    """How the fixed overrides of a source differ from this sweep's, leaving out where and how fast they ran."""
    from explab.config import override_key
    from explab.sweep.study_record import computing_overrides

    def telling(overrides: Sequence[str]) -> set[str]:
        return {o for o in computing_overrides(overrides) if not override_key(o).startswith(_PLACE_OVERRIDES)}

    then, now = telling(source_fixed), telling(fixed)
    return [f"{o} there only" for o in sorted(then - now)] + [f"{o} here only" for o in sorted(now - then)]


def _study_points(source: Mapping[str, Any], objectives: Objectives, fixed: Sequence[str]) -> Iterator[Point]:
    import optuna
    from optuna.trial import TrialState

    from explab.sweep.storage import open_storage, storage_file
    from explab.sweep.study_record import RECORD_ATTR

    url, name = str(source["storage"]), str(source["study_name"])
    path = storage_file(url)
    if path is not None and not path.exists():  # opening it would create an empty one
        raise UsageError(f"warm start: {url} does not exist (no file {path})")
    storage = open_storage(url)
    assert storage is not None  # check_sources refused an empty URL
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UsageError(
            f"warm start: no study '{name}' in {url}; studies there: {', '.join(names) or 'none'}"
        ) from None
    recorded = study.user_attrs.get(RECORD_ATTR, {})
    if "metric" in recorded and recorded["metric"] != objectives.metric_setting:
        raise UsageError(
            f"warm start: study '{name}' optimised {recorded['metric']}, this sweep {objectives.metric_setting}; "
            "its values would mean something else here"
        )
    if [d.name.lower() for d in study.directions] != list(objectives.directions):
        raise UsageError(
            f"warm start: study '{name}' was {', '.join(d.name.lower() for d in study.directions)}, this sweep is "
            f"{', '.join(objectives.directions)}"
        )
    source_fixed = list(recorded.get("fixed", []))
    other = _other_settings(source_fixed, fixed) if "fixed" in recorded else []
    if other:
        log.warning(
            "warm start from study '%s': its trials ran under other fixed overrides (%s); their values may not "
            "hold for this sweep",
            name,
            ", ".join(other),
        )
    set_by_source = _by_key(source_fixed)
    # pruned trials too: they tell the sampler where the bad regions are
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if REPEATS_ATTR not in trial.user_attrs:
            values = trial.values if trial.state == TrialState.COMPLETE else None
            origin = f"study {name} trial {trial.number}"
            yield Point(trial.params, values, origin, trial.intermediate_values, set_by_source)


def _mlflow_points(source: Mapping[str, Any], objectives: Objectives) -> Iterator[Point]:
    from explab.tracking.store import deleted_experiment, every_run, open_recorded_store

    if not objectives.metrics:
        raise UsageError("warm start from MLflow runs reads the metrics named by hydra.sweeper.metric; set it")
    experiment_name, uri = source["mlflow"], source.get("tracking_uri")
    if not uri:  # a sweep that records no MLflow runs has no store of its own to read them from
        raise UsageError(
            f"warm start from MLflow experiment '{experiment_name}': this sweep records no MLflow runs, so give the "
            f"store that holds them: {{mlflow: {experiment_name}, tracking_uri: URI}}"
        )
    client = open_recorded_store(str(uri))
    experiment = client.get_experiment_by_name(str(experiment_name))
    if experiment is None:
        raise UsageError(f"warm start: no MLflow experiment '{experiment_name}' in {uri}")
    if experiment.lifecycle_stage == "deleted":
        # its runs went to the trash with it: the search would start cold, saying it added nothing
        raise deleted_experiment(
            str(uri), experiment.name, experiment.experiment_id, ", or warm-start from another experiment"
        )
    resumed = 0
    for run in every_run(client, [experiment.experiment_id], "attributes.status = 'FINISHED'"):
        if run.data.tags.get("explab.sweep") == "parent":
            continue
        if RESUMED_WITH_TAG in run.data.tags:
            resumed += 1  # its metrics come from two settings (10 epochs, then 20): no point of the space scored them
            continue
        if all(m in run.data.metrics for m in objectives.metrics):
            values = [run.data.metrics[m] for m in objectives.metrics]
            yield Point({**chosen_options(run), **run.data.params}, values, f"run {run.info.run_id}")
    if resumed:
        log.info("warm start from %s leaves out %d run(s) resumed with other settings", experiment_name, resumed)


def chosen_options(run: Any) -> dict[str, str]:
    """The config groups' options ``run`` was composed with (``optimizer: adamw``), which a search space draws
    by name while the params hold what they built: from the run's ``explab.choice.*`` tags; for a run recorded
    before those, the option that builds the group's class (``adamw`` for ``optimizer._target_=torch.optim.AdamW``,
    ``explab.configurations.builds``)."""
    from explab.tracking.record import CHOICE_TAG

    tagged = {k.removeprefix(CHOICE_TAG): v for k, v in run.data.tags.items() if k.startswith(CHOICE_TAG)}
    if tagged:
        return tagged
    return {
        key.removesuffix("._target_"): BuiltClass(value)
        for key, value in run.data.params.items()
        if key.endswith("._target_")
    }


class BuiltClass(str):
    """The class a config group built, standing for the group's option that builds it (see ``chosen_options``)."""

    def built_by(self, option: Any) -> bool:
        from explab.configurations import builds

        return builds(option, self)


def _label(source: Mapping[str, Any]) -> str:
    if "mlflow" in source:
        return f"MLflow experiment {source['mlflow']} ({source.get('tracking_uri')})"
    return f"study {source.get('study_name')} ({source.get('storage')})"


def check_sources(sources: Sequence[Mapping[str, Any]]) -> None:
    """Each source names a study (``storage`` and ``study_name``) or an MLflow experiment (``mlflow``)."""
    for source in sources:
        keys = set(source) if isinstance(source, Mapping) else set()
        if not (source.get("mlflow") if "mlflow" in keys else {"storage", "study_name"} <= keys and source["storage"]):
            raise UsageError(
                f"hydra.sweeper.warm_start entry {source!r}: give {{storage: URL, study_name: NAME}} or "
                "{mlflow: EXPERIMENT, tracking_uri: URI}"
            )


def configured_values(job_config: Any, names: Iterable[str]) -> dict[str, Any]:
    """The value each of ``names`` has in ``job_config``: a config group's chosen option by its name
    (``hydra.runtime.choices``), any other key's value; keys the config lacks or holds a mapping under are left
    out."""
    from omegaconf import OmegaConf

    choices = OmegaConf.select(job_config, "hydra.runtime.choices", default=None) or {}
    values = {}
    for name in names:
        value = choices[name] if name in choices else OmegaConf.select(job_config, name, default=None)
        if value is not None and not OmegaConf.is_config(value):
            values[name] = value
    return values


def _as_drawn(value: Any, distribution: BaseDistribution) -> Any:
    """``value`` as the distribution draws it; MLflow keeps parameters as strings."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if not isinstance(value, str):
        return value
    if isinstance(distribution, CategoricalDistribution):
        named = value.built_by if isinstance(value, BuiltClass) else lambda c: str(c) == value
        return next((c for c in distribution.choices if named(c)), value)
    try:
        return int(float(value)) if isinstance(distribution, IntDistribution) else float(value)
    except ValueError:
        return value


def placed(
    params: Mapping[str, Any],
    space: Mapping[str, BaseDistribution],
    conditions: Mapping[str, Condition],
    unsearched: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """``params`` restricted to ``space`` and converted to its values; None when they fall outside it (a value
    it cannot draw, or a searched parameter missing where its condition holds).

    ``unsearched`` gives the value a parameter had where ``params`` lack it (its job's config value), taken
    wherever its condition holds, conditions on parameters so given included.
    """
    unsearched = unsearched or {}
    point: dict[str, Any] = {}
    for name in space:
        if name not in params:
            continue
        value = _as_drawn(params[name], space[name])
        if not possible(space[name], value):
            return None
        point[name] = value
    missing = [name for name in space if name not in point and name in unsearched]
    while missing:  # a parameter given this way can make another's condition hold
        ready = [n for n in missing if conditions.get(n) is None or conditions[n].holds(point)]
        for name in ready:
            value = _as_drawn(unsearched[name], space[name])
            if not possible(space[name], value):
                return None
            point[name] = value
        missing = [n for n in missing if n not in ready] if ready else []
    for name in space:
        condition = conditions.get(name)
        applies = condition is None or condition.holds(point)
        if applies != (name in point):
            return None
    return point


def add_warm_start(
    study: optuna.Study,
    sources: Sequence[Mapping[str, Any]],
    space: Mapping[str, BaseDistribution],
    conditions: Mapping[str, Condition],
    objectives: Objectives,
    configured: Mapping[str, Any] | None = None,
    fixed: Sequence[str] = (),
) -> list[str]:
    """Add each source's points inside ``space`` to ``study`` as COMPLETE trials, once per source.

    ``configured`` holds the value each searched parameter has in this sweep's job config (its fixed overrides
    ``fixed`` applied), which a study's trial that did not search it ran with unless its own fixed overrides
    set it.

    Returns:
        A line per source, added now or earlier: its label with the trials added and skipped.

    Raises:
        UsageError: a source that does not exist, or that optimised another metric or direction; then nothing
            is added.
    """
    import optuna
    from optuna.trial import TrialState

    done: dict[str, str] = dict(study.user_attrs.get(SOURCES_ATTR, {}))
    # every source is read before any point is added, so a source that cannot be read leaves the study as it was
    pending = {
        _label(source): list(
            _mlflow_points(source, objectives) if "mlflow" in source else _study_points(source, objectives, fixed)
        )
        for source in sources
        if _label(source) not in done
    }
    for label, points in pending.items():
        added = skipped = 0
        for point in points:
            params = placed(point.params, space, conditions, {**(configured or {}), **point.fixed})
            if params is None:
                skipped += 1
                continue
            trial = optuna.trial.create_trial(
                state=TrialState.COMPLETE if point.values is not None else TrialState.PRUNED,
                params=params,
                distributions={name: space[name] for name in params},
                values=list(point.values) if point.values is not None else None,
                intermediate_values=dict(point.intermediate),
                user_attrs={WARM_START_ATTR: point.origin},
            )
            study.add_trial(trial)
            added += 1
        done[label] = f"{added} added, {skipped} outside the space"
        study.set_user_attr(SOURCES_ATTR, done)
        log.info("warm start from %s: %d trials added, %d skipped (outside the search space)", label, added, skipped)
    return [f"{label}: {counts}" for label, counts in done.items()]


def enqueue_once(
    study: optuna.Study,
    points: Sequence[Mapping[str, Any]],
    space: Mapping[str, BaseDistribution],
    conditions: Mapping[str, Condition],
) -> None:
    """Queue ``points`` (known-good configurations; a parameter left out is sampled) to be the study's next
    trials, once per study.

    Raises:
        UsageError: a point names a parameter the space does not search, a value it cannot draw, or a
            parameter whose condition (``when:``) the point's own values rule out.
    """
    for point in points:
        outside = [k for k, v in point.items() if k not in space or not possible(space[k], v)]
        if outside:
            raise UsageError(
                f"hydra.sweeper.enqueue: {dict(point)} does not fall inside the search space at "
                f"{', '.join(outside)} (the space: {', '.join(f'{k}: {v!r}' for k, v in space.items())}); "
                "enqueue values the space can draw"
            )
        # Optuna drops a queued value that is never suggested, so the trial would run without it, unsaid
        ruled_out = [
            f"{name} (searched only when {conditions[name]})"
            for name in point
            if name in conditions
            and all(parent in point for parent in conditions[name].requires)
            and not conditions[name].holds(point)
        ]
        if ruled_out:
            raise UsageError(
                f"hydra.sweeper.enqueue: {dict(point)} sets {', '.join(ruled_out)}, which its own values rule "
                "out, so the trial would run without it: leave it out of this point, or change the values its "
                "condition names"
            )
    if study.user_attrs.get(ENQUEUED_ATTR):
        return
    for point in points:
        study.enqueue_trial(dict(point), skip_if_exists=True)
    study.set_user_attr(ENQUEUED_ATTR, True)
