"""A training job's record in MLflow: open its run, record how it starts, and what it leaves at its end."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf import DictConfig, OmegaConf

from explab.callbacks.system_metrics import SystemMetrics
from explab.config import is_hydra_group, project_root, swept_values
from explab.configurations import TEST_FINGERPRINT_TAG
from explab.search_path import search_path_tags
from explab.tracking import environment
from explab.tracking.datasets import log_dataset_inputs
from explab.tracking.logger_node import mlflow_logger_node
from explab.tracking.params import flatten_params, recordable
from explab.tracking.run import TrackedRun
from explab.tracking.store import shown_url
from explab.utils.logging import get_logger, global_rank

if TYPE_CHECKING:
    import lightning as L

    from explab.build import Job
    from explab.sweep.trial import TrialJob

log = get_logger(__name__)


def run_tags(cfg: DictConfig, extra: dict[str, Any] | None = None) -> dict[str, str]:
    tags: dict[str, Any] = {
        **environment.SOURCE_TAGS,
        "experiment": cfg.get("experiment_name", ""),
        "seed": cfg.get("seed"),
        **environment.host_tags(),
        **environment.checkout_state(project_root())[0],
        **environment.code_checkouts(cfg, project_root()),
        **{f"version.{name}": v for name, v in environment.versions().items()},
        **config_group_choices(),
        **search_path_tags(),
    }
    tags.update(extra or {})
    return {key: str(value) for key, value in tags.items() if value is not None}


CHOICE_TAG = "explab.choice."


def config_group_choices() -> dict[str, str]:
    """``explab.choice.optimizer: adamw``, one tag per config group the job composed, as Hydra chose it: the
    params hold what the choice built (``optimizer._target_``), not the option's name that a search space or a
    warm start draws. Empty outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {
        f"{CHOICE_TAG}{group}": str(option) for group, option in choices.items() if option and not is_hydra_group(group)
    }


def tracked_here(cfg: DictConfig) -> bool:
    """Whether this process records the job in MLflow: tracking is on and this is global rank 0 (the other
    ranks never touch the store)."""
    return mlflow_logger_node(cfg) is not None and global_rank() == 0


def open_run(cfg: DictConfig, trial: TrialJob) -> TrackedRun:
    """The job's MLflow run where ``tracked_here``: a new one, or with ``resume=RUN_ID`` the same run again.

    Called before seeding: MLflow draws its random run names from Python's ``random``, which a fixed seed
    would make the same for every run.
    """
    from explab.reproduce import reproduction_name

    logger_cfg = mlflow_logger_node(cfg)
    assert logger_cfg is not None, "open_run is called only where tracked_here(cfg)"
    if cfg.get("resume"):
        run = TrackedRun.reopen(logger_cfg.tracking_uri, str(cfg.resume))
        run.set_tags({"explab.resumed_from_checkpoint": cfg.ckpt_path})
        return run
    extra = {**trial.tags(), **({"explab.reproduced_from": cfg.reproduce} if cfg.get("reproduce") else {})}
    run = TrackedRun.create(
        tracking_uri=logger_cfg.tracking_uri,
        experiment_name=logger_cfg.experiment_name,
        artifact_location=logger_cfg.get("artifact_location"),
        run_name=logger_cfg.get("run_name") or trial.run_name() or reproduction_name(cfg) or swept_values(),
        tags=run_tags(cfg, extra),
    )
    try:
        trial.remember_run(run.run_id)
    except BaseException as error:  # the run exists now: the caller's lifecycle only ends runs it was handed
        run.end(error)
        raise
    return run


def record_config(run: TrackedRun, cfg: DictConfig) -> None:
    """Params from the flattened config; the resolved config, overrides and environment as artifacts."""
    resolved = recordable(cfg)
    run.log_params(flatten_params(resolved))
    run.log_text(OmegaConf.to_yaml(OmegaConf.create(resolved)), "config/config.yaml")
    from explab.reproduce import job_overrides

    run.log_text(yaml.safe_dump(job_overrides(cfg), sort_keys=False), "config/overrides.yaml")
    record = {"versions": environment.versions(), "environment": environment.allowed_environment()}
    run.log_text(yaml.safe_dump(record, sort_keys=True), "config/environment.yaml")
    diff = environment.checkout_state(project_root())[1]
    if diff:
        run.log_text(diff, "config/git_diff.patch")
    for package, (_, change) in environment.package_checkouts(cfg, project_root()).items():
        if change:  # a lab's own uncommitted change, which its git.PACKAGE.diff_sha256 only tells apart
            run.log_text(change, f"config/git_diff.{package}.patch")


def record_start(run: TrackedRun | None, job: Job) -> None:
    """What the run starts from: its config (a resumed run has it already), the data it sees, the device."""
    if run is None:
        return
    cfg, datamodule, trainer = job.cfg, job.datamodule, job.trainer
    if not cfg.get("resume"):
        record_config(run, cfg)
    hardware = environment.hardware(trainer)
    run.set_tags(
        {
            **_hardware_tags(run, cfg, hardware),
            "data.fingerprint": datamodule.fingerprint,
            TEST_FINGERPRINT_TAG: datamodule.test_fingerprint(),
            **{f"data.{k}": v for k, v in datamodule.summary().items()},
            "trainer.precision_effective": trainer.precision,
            "trainer.world_size": trainer.world_size,
        }
    )
    log_dataset_inputs(run, datamodule)
    for name, record in datamodule.preprocessing().items():
        run.log_text(json.dumps(record), f"preprocessing/{name}")
    if cfg.get("reproduce"):
        from explab.reproduce import check_fingerprint, check_hardware

        source = run.client.get_run(str(cfg.reproduce)).data.tags
        check_fingerprint(source, datamodule.fingerprint)
        check_hardware(source, hardware)


RESUMED_HARDWARE_TAG = "explab.resumed_hardware"


def _hardware_tags(run: TrackedRun, cfg: DictConfig, now: dict[str, str]) -> dict[str, str]:
    """The ``hardware.*`` tags of a new run (``now``, what this process trains on). A resumed run keeps the
    hardware it started on; where this resume trains on other hardware, ``explab.resumed_hardware`` says what
    moved. (A run recorded before these tags existed gets none: its first epochs' hardware is not known.)"""
    if not cfg.get("resume"):
        return now
    moved = environment.hardware_differences(run.client.get_run(run.run_id).data.tags, now)
    if not moved:
        return {}
    log.info("run %s resumes on other hardware than it started on: %s", run.run_id, "; ".join(moved))
    return {RESUMED_HARDWARE_TAG: "; ".join(moved)}


def record_end(run: TrackedRun | None, job: Job) -> None:
    """What a finished fit leaves on its run: the best checkpoint, the figures and the MLflow model; for a
    ``reproduce=`` run, whether its final metrics are the source run's."""
    if run is None:
        return
    cfg = job.cfg
    for callback in job.trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, SystemMetrics):
            callback.wait_until_written()
    _log_best_checkpoint(run, job.trainer)
    if cfg.get("log_plots", True):
        from explab.tracking.plots import log_run_plots

        log_run_plots(run, job.model)
    if cfg.get("log_model", True):
        from explab.tracking.model import log_model

        log_model(run, job.model, job.datamodule, cfg, cfg.get("registered_model_name"))
    if cfg.get("reproduce"):
        from explab.reproduce import compare_with_source

        compare_with_source(run, str(cfg.reproduce))


def announce_finished(run: TrackedRun | None, metrics: dict[str, float]) -> None:
    """One log line with the run's test metrics (its best validation values when it ran no test) and where
    to find it in the UI."""
    if run is None:
        return
    shown = [k for k in sorted(metrics) if k.startswith("test/")] or [k for k in sorted(metrics) if k.endswith("_best")]
    summary = ", ".join(f"{k}={metrics[k]:.4f}" for k in shown)
    log.info(
        "MLflow run %s FINISHED (%s) in %s; UI: %s",
        run.run_id,
        summary,
        shown_url(run.tracking_uri),
        run.where_to_view(),
    )


def _log_best_checkpoint(run: TrackedRun, trainer: L.Trainer) -> None:
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "")
    if path:
        run.log_file(path, "checkpoints")
        run.set_tags({"explab.best_checkpoint": f"checkpoints/{path.rsplit('/', 1)[-1]}"})
