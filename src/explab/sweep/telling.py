"""The sweeper's side of a trial's end: telling the study how each trial ended, exactly once.

A trial is told once whoever else held it (two workers can: one taken for gone comes back), a trial taken
from the study is ended even when Ctrl-C or SIGTERM lands while it is taken, and a proposal that repeats a
finished trial is told that trial's value instead of being trained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from optuna.trial import TrialState

from explab.sweep import REPEATS_ATTR, is_repeat
from explab.sweep.heartbeat import RELEASED_ATTR
from explab.sweep.slurm import in_slurm_job
from explab.utils.signals import Terminated, held

if TYPE_CHECKING:
    import optuna
    from hydra.core.utils import JobReturn
    from optuna.trial import FrozenTrial, Trial

log = logging.getLogger(__name__)
_R = TypeVar("_R")

# the user attribute that keeps why a trial FAILED, for whoever reads the study (its trials table, a notebook)
ERROR_ATTR = "explab.error"


def tell_once(
    study: optuna.Study,
    trial: Trial | int,
    values: list[float] | None,
    state: TrialState,
    skip_if_finished: bool = False,
) -> None:
    """``study.tell``, where the grid sampler's stop of an exhausted study is not an error: it is raised after
    the trial's state is set."""
    try:
        study.tell(trial, values, state=state, skip_if_finished=skip_if_finished)
    except RuntimeError as err:
        if "Study.stop" not in str(err):
            raise


def hold_trial(study: optuna.Study, take: Callable[[], Trial | None], run: Callable[[Trial], _R]) -> _R | None:
    """``take()`` a trial (ask, queue or claim one) and ``run(trial)``; None when there was none to take.

    Interrupted, the trial is failed (nothing left RUNNING) or, when a SLURM job is being preempted,
    released for the requeued job or another worker to continue. Ctrl-C and SIGTERM wait while the trial
    is taken: one landing between the storage creating it and ``trial`` naming it would leave it RUNNING
    with nobody to end it.
    """

    def end(trial: Trial | None, error: BaseException | None) -> None:
        if trial is None or error is None:
            return
        if isinstance(error, Terminated) and in_slurm_job():
            trial.set_user_attr(RELEASED_ATTR, True)
            log.warning("trial %d released: this SLURM job is stopping; the next worker continues it", trial.number)
        else:
            tell_once(study, trial, None, TrialState.FAIL, skip_if_finished=True)

    with held(take, end) as trial:
        return None if trial is None else run(trial)


def tell(study: optuna.Study, trial: Trial, state: TrialState, values: list[float] | None, error: object) -> TrialState:
    """Tell ``study`` how ``trial`` ended (a FAIL keeps ``error`` as ``ERROR_ATTR``); the state it holds when
    another worker told it first."""
    stored = study._storage.get_trial(trial._trial_id)
    if stored.state.is_finished():
        # two workers held it: one taken for gone (a host that hung, or lost the storage) came back
        log.warning(
            "trial %d was told %s meanwhile by another worker that held it too: this job's outcome (%s) is "
            "not told",
            trial.number, stored.state.name, state.name,
        )  # fmt: skip
        return stored.state
    if error is not None and state == TrialState.FAIL:
        trial.set_user_attr(ERROR_ATTR, str(error)[:2000])
        log.warning("trial %d FAIL: %s", trial.number, error)
    tell_once(study, trial, values, state)
    told = " " + ", ".join(f"{v:.6g}" for v in values) if values else ""
    log.info("trial %d %s%s %s", trial.number, state.name, told, trial.params)
    return state


def tell_job_error(study: optuna.Study, trial: Trial, job: JobReturn) -> tuple[TrialState, Any]:
    """Tell how a job that did not complete ended: PRUNED when it raised Optuna's ``TrialPruned``, else FAIL
    with its error; returns that state and what the job raised."""
    import optuna

    # a failed job keeps what it raised in ``_return_value``; reading ``return_value`` re-raises it after
    # printing "Error executing job", which a pruned trial is not
    raised = job._return_value
    if isinstance(raised, optuna.TrialPruned):
        return tell(study, trial, TrialState.PRUNED, None, raised), raised
    try:
        returned = job.return_value  # Hydra prints the job's overrides and re-raises its exception here
    except Exception as error:
        return tell(study, trial, TrialState.FAIL, None, error), error
    raise AssertionError(f"job of trial {trial.number} ended {job.status} but returned {returned!r}")


def completed_duplicate(study: optuna.Study, trial: Trial) -> FrozenTrial | None:
    """The earliest COMPLETE trial that ran (here, or in a warm-start source) exactly these values, or None."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return next((t for t in complete if not is_repeat(t) and t.params == trial.params), None)


def tell_repeat(study: optuna.Study, trial: Trial, duplicate: FrozenTrial) -> None:
    """Tell ``trial``, which repeats ``duplicate``'s values, that trial's value; nothing is trained."""
    trial.set_user_attr(REPEATS_ATTR, duplicate.number)
    tell_once(study, trial, duplicate.values, TrialState.COMPLETE)
    log.info(
        "trial %d repeats trial %d %s: told its value %s, nothing trained",
        trial.number,
        duplicate.number,
        trial.params,
        ", ".join(f"{v:.6g}" for v in duplicate.values),
    )
