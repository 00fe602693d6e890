"""A trial that was cut off (its worker killed, its node lost, its SLURM job preempted) is continued under
its own number, in its own MLflow run, from its own last.ckpt: never failed and sampled again.

The job records its MLflow run on its Optuna trial as the run opens (``remember_run_of_trial``). Whoever
launches the trial's job again (another worker that adopted it, a restarted command, a requeued SLURM
job) gets the same ``optuna_trial`` overrides; ``continue_interrupted_trial`` then turns the job into a
``resume=`` of that run, or, when the run never wrote a checkpoint, drops it and trains from scratch. A run
that had already ended COMPLETE or PRUNED when its worker was cut off (between the run's end and the tell)
trains nothing again: ``outcome_of_ended_trial`` hands its outcome to the sweeper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig, open_dict

from explab.errors import first_line
from explab.tracking.logger_node import mlflow_logger_node
from explab.utils.logging import get_logger

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial, Trial

    from explab.tracking import TrackedRun

log = get_logger(__name__)

RUN_ATTR = "explab.mlflow_run_id"  # the trial's MLflow child run
ATTEMPTS_ATTR = "explab.attempts"  # how many times the trial's job started


def remember_run_of_trial(optuna_trial: DictConfig, run_id: str) -> None:
    """Record ``run_id`` on the job's Optuna trial, and count the attempt; raise ``TrialEnded`` when the
    trial ended since the job found it open."""
    from optuna.exceptions import UpdateFinishedTrialError

    from explab.sweep.storage import trial_from_config
    from explab.sweep.watch import check_trial_open

    trial = trial_from_config(optuna_trial)
    try:
        trial.set_user_attr(RUN_ATTR, run_id)
        trial.set_user_attr(ATTEMPTS_ATTR, int(trial.user_attrs.get(ATTEMPTS_ATTR, 0)) + 1)
    except UpdateFinishedTrialError:
        check_trial_open(optuna_trial, then="this job stops")
        raise


def _earlier_run(cfg: DictConfig) -> TrackedRun | None:
    """The MLflow run an earlier attempt of this job's trial opened; None outside a sweep, on a first attempt,
    for an explicit ``resume=``/``reproduce=``, or without MLflow."""
    optuna_trial = cfg.get("optuna_trial")
    if not optuna_trial or cfg.get("resume") or cfg.get("reproduce"):
        return None
    from explab.sweep.storage import trial_from_config

    run_id = trial_from_config(optuna_trial).user_attrs.get(RUN_ATTR)
    if not run_id:
        return None
    from explab.tracking import TrackedRun

    logger_cfg = mlflow_logger_node(cfg)
    return TrackedRun(logger_cfg.tracking_uri, str(run_id)) if logger_cfg is not None else None


def outcome_of_ended_trial(cfg: DictConfig) -> dict[str, float] | None:
    """The metrics of the trial's earlier run when it ended COMPLETE, which the job returns instead of
    training: its worker was cut off after the run ended and before the sweeper told Optuna. None when the
    trial has no such run.

    Raises:
        optuna.TrialPruned: the earlier run ended pruned; the sweeper tells the trial so.
    """
    earlier = _earlier_run(cfg)
    if earlier is None:
        return None
    run = earlier.client.get_run(earlier.run_id)
    state = run.data.tags.get("optuna.trial_state")  # the job tags it just before the run ends
    number = cfg.optuna_trial.number
    if run.info.status == "FINISHED" and state == "COMPLETE":
        log.info(
            "trial %s: its run %s had finished when its worker was cut off; its metrics stand", number, run.info.run_id
        )
        return dict(run.data.metrics)
    if state == "PRUNED":
        import optuna

        raise optuna.TrialPruned(f"trial {number}'s run {run.info.run_id} was pruned before its worker was cut off")
    return None


def continue_interrupted_trial(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``resume`` set to the trial's earlier run when that run left a last.ckpt; ``cfg`` as it
    is for a job outside a sweep, a trial's first attempt, or an explicit ``resume=``/``reproduce=``."""
    earlier = _earlier_run(cfg)
    if earlier is None:
        return cfg
    from explab.resume_checks import last_checkpoint_in
    from explab.utils.logging import global_rank

    # DDP ranks 1..N start once rank 0 holds the trial's run: they follow its decision and change nothing
    rank_zero = global_rank() == 0
    optuna_trial, run_id = cfg.optuna_trial, earlier.run_id
    output_dir = earlier.client.get_run(earlier.run_id).data.params.get("paths.output_dir", "")
    checkpoint = last_checkpoint_in(output_dir) if output_dir else None
    if checkpoint is not None and checkpoint.is_file():
        if rank_zero:
            _end_run_its_worker_left(earlier, optuna_trial.number)
        log.info("trial %s continues its MLflow run %s from %s", optuna_trial.number, run_id, checkpoint)
        with open_dict(cfg):
            cfg.resume = str(run_id)
        return cfg
    if not rank_zero:
        return cfg
    # killed before its first checkpoint: nothing to continue, and one run per trial is what the parent shows
    log.info("trial %s restarts from scratch: its run %s left no checkpoint", optuna_trial.number, run_id)
    if earlier.client.get_run(earlier.run_id).info.status == "RUNNING":
        earlier.client.set_terminated(earlier.run_id, "KILLED")
    earlier.client.delete_run(earlier.run_id)
    return cfg


def _end_run_its_worker_left(earlier: TrackedRun, number: int) -> None:
    """End KILLED the trial's run that its cut-off worker left RUNNING (its node lost, or the worker killed
    outright), so that ``resume=`` takes it over. The sweeper found that worker gone before it handed the
    trial on; ``resume=`` cannot tell it for a run of another host, and would refuse the run as live."""
    from explab.tracking.orphans import end_left_running

    run = earlier.client.get_run(earlier.run_id)
    reason = (
        f"trial {number}'s worker was cut off while this run was RUNNING on {run.data.tags.get('hostname', '?')} "
        "(a lost node, or a worker killed outright); another worker continues it"
    )
    end_left_running(earlier.client, run, reason)


def fail_run_of_trial(cfg: DictConfig, trial: Trial | FrozenTrial, reason: str) -> None:
    """End FAILED, with ``reason``, the MLflow run that ``trial``'s last worker left RUNNING (or that another
    start closed KILLED since), as the sweeper fails the trial instead of continuing it: a trial is FAILED in
    MLflow exactly when it is FAIL in Optuna. ``cfg`` is the sweep's job config, whose MLflow logger says
    where the trial's run lives."""
    from explab.tracking.orphans import PID_TAG, end_killed
    from explab.tracking.store import open_client

    run_id, node = trial.user_attrs.get(RUN_ATTR), mlflow_logger_node(cfg)
    if not run_id or node is None:
        return
    try:
        client = open_client(node.tracking_uri)
        run = client.get_run(str(run_id))
        # KILLED too: a worker's next run may have closed it first, seeing its process gone; the trial's end rules
        if run.info.status not in ("RUNNING", "KILLED"):
            return
        end_killed(client, run.info.run_id, f"trial {trial.number} failed: {reason}", status="FAILED")
    except Exception as error:  # the store may be what stopped the sweep; the error being handled is the one to see
        log.warning(
            "MLflow run %s of trial %d could not be ended FAILED (%s): the next start in its experiment closes it",
            run_id, trial.number, first_line(error),
        )  # fmt: skip
        return
    pid = run.data.tags.get(PID_TAG, "?")
    log.warning("MLflow run %s of trial %d, left by process %s: marked FAILED", run_id, trial.number, pid)
