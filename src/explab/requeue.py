"""A requeued SLURM job (preempted, its node lost, ``scontrol requeue``, Lightning's auto-requeue on SIGUSR1)
continues the MLflow run its earlier attempt left in its output folder, from that run's last.ckpt, instead
of training from the start into a second run.

SLURM starts a requeued job with its first command and ``SLURM_RESTART_COUNT`` raised. A job whose attempts
share a folder (``hydra.run.dir=/shared/runs/$SLURM_JOB_ID``, or a multirun's job folder through submitit)
finds there the last.ckpt the stop signal made its earlier attempt write, which names that attempt's run.
A sweep trial's job is continued by its trial instead (``explab.sweep.continuation``).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf, open_dict

from explab.tracking.logger_node import mlflow_logger_node
from explab.tracking.orphans import end_left_running
from explab.utils.logging import get_logger, global_rank

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = get_logger(__name__)


def restart_count() -> int:
    """How many times SLURM has requeued this job: 0 for a first attempt, or outside SLURM."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def is_slurm_task() -> bool:
    """Whether Lightning takes this process for a task SLURM started (``srun``, or a job's batch step), as it
    picks its cluster environment: torchrun inside a job is TorchElastic's, and a job named ``bash`` or
    ``interactive`` is not SLURM's to manage."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    return not TorchElasticEnvironment.detect() and SLURMEnvironment.detect()


def request_requeue() -> None:
    """Ask SLURM to requeue this job (``scontrol requeue``), as Lightning's auto-requeue does on SIGUSR1 (an
    array task by its array job and index). Called once ``last.ckpt`` is written: the next attempt continues
    the run from it. A refusal (a job submitted without ``--requeue`` where the cluster requeues none by
    default) is logged with its fix, and the job ends with its run KILLED, resumable by hand."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if array_job else os.environ.get("SLURM_JOB_ID")
    if not job:
        return
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60, check=False)
        said = ((done.stderr or done.stdout).strip() or f"exit status {done.returncode}") if done.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as err:
        said = str(err)
    if not said:
        log.info("SLURM job %s requeued: its next attempt continues the run from last.ckpt", job)
        return
    log.warning(
        "SLURM job %s could not be requeued (%s): submit it with sbatch --requeue, or continue its run by hand "
        "with resume=RUN_ID",
        job,
        said,
    )


@dataclass(frozen=True)
class EarlierAttempt:
    """What an earlier attempt of this job left in its folder: its last.ckpt, the MLflow run that checkpoint
    belongs to (None when it trained with ``logger=none``), and that run's metrics if the run had FINISHED."""

    checkpoint: Path
    run_id: str | None
    finished_metrics: dict[str, float] | None

    def continued(self, cfg: DictConfig) -> DictConfig:
        """``cfg`` as a ``resume=`` of the earlier attempt's run (as ``ckpt_path=`` of its last.ckpt when it
        trained with ``logger=none``). Only for a run that has not finished: see ``finished_metrics``."""
        job = os.environ.get("SLURM_JOB_ID", "?")
        with open_dict(cfg):
            if self.run_id:
                log.info("requeued SLURM job %s continues its MLflow run %s from %s", job, self.run_id, self.checkpoint)
                cfg.resume = self.run_id
            else:
                log.info(
                    "requeued SLURM job %s fits on from %s (logger=none: no run to continue)", job, self.checkpoint
                )
                cfg.ckpt_path = str(self.checkpoint)
        return cfg


def earlier_attempt(cfg: DictConfig) -> EarlierAttempt | None:
    """The earlier attempt this requeued job continues; None for a first attempt, an explicit ``resume=`` or
    ``reproduce=``, a sweep trial's job, or a folder that holds no last.ckpt (said in a warning: the job
    trains from the start)."""
    if restart_count() == 0 or cfg.get("resume") or cfg.get("reproduce") or cfg.get("optuna_trial"):
        return None
    from explab.resume_checks import last_checkpoint_in

    output_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
    checkpoint = last_checkpoint_in(output_dir or "")
    if not output_dir or not checkpoint.is_file():
        if output_dir:
            _end_runs_left_running(cfg, output_dir)
        log.warning(
            "SLURM job %s was requeued (restart %d) into %s, which holds no last checkpoint of an earlier attempt: "
            "it trains from the start, as a new MLflow run. A job continues its run when its attempts share a "
            "folder (hydra.run.dir=/shared/runs/$SLURM_JOB_ID)",
            os.environ.get("SLURM_JOB_ID", "?"),
            restart_count(),
            output_dir,
        )
        return None
    from explab.checkpoints import load_checkpoint, recorded_config

    run_id = recorded_config(load_checkpoint(checkpoint), checkpoint).get("mlflow_run_id")
    finished = _metrics_if_finished(cfg, run_id) if run_id else None
    if finished is not None:
        log.info(
            "requeued SLURM job %s: its MLflow run %s had finished; nothing is left to train",
            os.environ.get("SLURM_JOB_ID", "?"),
            run_id,
        )
    return EarlierAttempt(checkpoint, run_id, finished)


def _store_of(cfg: DictConfig) -> MlflowClient | None:
    """The job's tracking store, None without MLflow or when no store exists yet (then nothing is left in it)."""
    from explab.tracking.store import TrackingStoreError, open_recorded_store

    logger_cfg = mlflow_logger_node(cfg)
    if logger_cfg is None:
        return None
    try:
        return open_recorded_store(str(logger_cfg.tracking_uri))
    except TrackingStoreError:
        return None


def _end_left_running(client: MlflowClient, run: Run) -> None:
    """End KILLED the run an earlier attempt left RUNNING (its node lost, or SIGKILL after SLURM's grace time):
    SLURM runs one attempt of a job at a time, so nobody trains it any more. ``resume=`` would otherwise refuse
    a RUNNING run of another host, where this job cannot tell that its process is gone."""
    if global_rank() != 0:
        return
    reason = (
        f"SLURM job {os.environ.get('SLURM_JOB_ID', '?')} was requeued (restart {restart_count()}) while this "
        "run was RUNNING: its attempt ended without closing it (a lost node, or SIGKILL)"
    )
    end_left_running(client, run, reason)


def _end_runs_left_running(cfg: DictConfig, output_dir: str) -> None:
    """End KILLED the runs of this job's folder that an earlier attempt left RUNNING before it wrote a
    last.ckpt: the new attempt trains a new run, and the old ones would stay RUNNING for ever."""
    client, logger_cfg = _store_of(cfg), mlflow_logger_node(cfg)
    experiment = client.get_experiment_by_name(str(logger_cfg.experiment_name)) if client and logger_cfg else None
    if client is None or experiment is None or "'" in output_dir:
        return
    for run in client.search_runs(
        [experiment.experiment_id],
        f"attributes.status = 'RUNNING' and params.`paths.output_dir` = '{output_dir}'",
        max_results=100,
    ):
        _end_left_running(client, run)


def _metrics_if_finished(cfg: DictConfig, run_id: str) -> dict[str, float] | None:
    """The run's metrics when it FINISHED; a run left RUNNING is ended KILLED first (``_end_left_running``)."""
    from mlflow.exceptions import MlflowException

    client = _store_of(cfg)
    if client is None:
        return None  # resume= refuses a tracked run without its logger, or names the store it lacks
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None  # not in this store: resume= names the run and the store
    _end_left_running(client, run)
    return dict(run.data.metrics) if run.info.status == "FINISHED" else None
