"""A study's MLflow parent run: one per study, whichever worker or command opens it first.

The parent run's id is kept on the study (``PARENT_RUN_ATTR``), so every worker and every resumed command
finds the same run; its trials' child runs point at it. Workers that start in the same instant may each
create one: all of them agree on the earliest and the others delete theirs. Whoever holds the parent run
answers for it (its host and pid are on it): it is ended with a status before anything else, so no
interrupt leaves it RUNNING, and a parent that other workers still use is handed to one of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from explab.sweep.heartbeat import WORKER_SCOPE_ATTR, worker_of
from explab.sweep.summary import summarise_study
from explab.tracking import TrackedRun, run_status_for
from explab.tracking.environment import SOURCE_TAGS, host_tags
from explab.tracking.orphans import process_tags
from explab.utils.logging import get_logger
from explab.utils.signals import interrupts_deferred

if TYPE_CHECKING:
    import optuna

log = get_logger(__name__)

PARENT_RUN_ATTR = "explab.mlflow_parent_run_id"


def open_parent_run(
    study: optuna.Study, mlflow: Mapping[str, Any], tags: Mapping[str, str], own: bool = True
) -> TrackedRun:
    """The study's parent run in the store ``mlflow`` names (``tracking_uri``, ``experiment_name``,
    ``artifact_location``): created with ``tags`` by the first worker, reopened by every later one. A worker
    that does not ``own`` it (a pool's worker: the pool's process does) only gets the handle."""
    uri = mlflow["tracking_uri"]
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id:
        run = TrackedRun(uri, run_id)
        if own:
            run.client.update_run(run_id, status="RUNNING")
            run.set_tags({**host_tags(), **process_tags()})  # this worker now answers for it
        return run
    run = TrackedRun.create(
        tracking_uri=uri,
        experiment_name=mlflow.get("experiment_name") or study.study_name,
        artifact_location=mlflow.get("artifact_location"),
        run_name=f"sweep-{study.study_name}",
        # with the pid TrackedRun adds, the host is what closes a parent whose worker was killed
        tags={**host_tags(), **SOURCE_TAGS, "explab.sweep": "parent", "optuna.study_name": study.study_name, **tags},
    )
    earliest = _earliest_parent_run_id(run, study.study_name)
    study.set_user_attr(PARENT_RUN_ATTR, earliest)
    if earliest != run.run_id:  # another worker created the parent a moment earlier
        run.client.delete_run(run.run_id)
        return TrackedRun(uri, earliest)
    return run


def close_parent_run(
    study: optuna.Study,
    parent: TrackedRun,
    error: BaseException | None,
    progress: tuple[int, int],
    n_trials: int,
    names: Sequence[str],
    reference_point: Sequence[float] | None,
) -> None:
    """End the parent run (by ``error``, or FINISHED once the study is full or nothing runs), then summarise
    the study on it; ``progress`` is the study's (finished, running) trials.

    The status comes first, so an interrupt during the summary cannot leave the parent RUNNING. A parent
    that other workers still use is handed to one of them, so orphan cleanup closes it only once they are
    gone too.
    """
    finished, running = progress
    if error is not None:
        parent.finish(run_status_for(error))
    elif finished >= n_trials or running == 0:
        parent.finish("FINISHED")
    else:
        _hand_to_a_running_worker(study, parent)
    log.info(
        "MLflow parent run %s: %d/%d trials finished; its trials in the UI: %s",
        parent.run_id,
        finished,
        n_trials,
        parent.where_to_view(),
    )
    with interrupts_deferred():
        try:
            summarise_study(study, parent, names, reference_point)
        except Exception as summary_error:
            log.warning("could not summarise the sweep in MLflow: %s", summary_error)


def _hand_to_a_running_worker(study: optuna.Study, parent: TrackedRun) -> None:
    from optuna.trial import TrialState

    running = [t for t in study.get_trials(states=(TrialState.RUNNING,)) if worker_of(t)[1].isdigit()]
    if running:
        host, pid = worker_of(running[0])
        parent.set_tags(process_tags(host, pid, running[0].user_attrs.get(WORKER_SCOPE_ATTR, "")))


def _earliest_parent_run_id(run: TrackedRun, study_name: str) -> str:
    """Workers that start together each create a parent; all agree on the earliest and drop their own."""
    found = run.client.search_runs(
        [run.experiment_id],
        filter_string=f"tags.`explab.sweep` = 'parent' and tags.`optuna.study_name` = '{study_name}'",
        max_results=100,
    )
    earliest = min(found, key=lambda r: (r.info.start_time, r.info.run_id), default=None)
    return earliest.info.run_id if earliest is not None else run.run_id
