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
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from explab.utils.logging import get_logger

log = get_logger(__name__)


def restart_count() -> int:
    """How many times SLURM has requeued this job: 0 for a first attempt, or outside SLURM."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


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


def _metrics_if_finished(cfg: DictConfig, run_id: str) -> dict[str, float] | None:
    from mlflow.exceptions import MlflowException

    from explab.build import mlflow_logger_node
    from explab.tracking.store import open_recorded_store

    logger_cfg = mlflow_logger_node(cfg)
    if logger_cfg is None:
        return None  # resume= refuses to continue a tracked run without its logger, and says so
    try:
        run = open_recorded_store(str(logger_cfg.tracking_uri)).get_run(run_id)
    except MlflowException:
        return None  # not in this store: resume= names the run and the store
    return dict(run.data.metrics) if run.info.status == "FINISHED" else None
