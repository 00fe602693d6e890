"""Start a run for a training job and write its record: params, tags, config, environment."""

from __future__ import annotations

from typing import Any

import yaml
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from explab.config import project_root
from explab.tracking import environment
from explab.tracking.params import flatten_params
from explab.tracking.run import TrackedRun


def hydra_overrides() -> list[str]:
    """The command-line overrides of this job, when it runs under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def run_tags(cfg: DictConfig, extra: dict[str, Any] | None = None) -> dict[str, str]:
    tags: dict[str, Any] = {
        "experiment": cfg.get("experiment_name", ""),
        "seed": cfg.get("seed"),
        **environment.host_tags(),
        **environment.git_state(project_root()),
        **{f"version.{name}": v for name, v in environment.versions().items()},
    }
    tags.update(extra or {})
    return {key: str(value) for key, value in tags.items() if value is not None}


def start_run(
    logger_cfg: DictConfig, cfg: DictConfig, extra_tags: dict[str, Any] | None = None, default_name: str | None = None
) -> TrackedRun | None:
    """Create the job's MLflow run on global rank 0; other ranks never touch the store.

    Called before seeding: MLflow draws its random run names from Python's ``random``, which a fixed seed
    would make the same for every run.
    """
    if rank_zero_only.rank != 0:
        return None
    return TrackedRun.create(
        tracking_uri=logger_cfg.tracking_uri,
        experiment_name=logger_cfg.experiment_name,
        artifact_location=logger_cfg.get("artifact_location"),
        run_name=logger_cfg.get("run_name") or default_name,
        tags=run_tags(cfg, extra_tags),
    )


def record_config(run: TrackedRun, cfg: DictConfig) -> None:
    """Params from the flattened config; the resolved config, overrides and environment as artifacts."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run.log_params(flatten_params(resolved))
    run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
    run.log_text(yaml.safe_dump(hydra_overrides(), sort_keys=False), "config/overrides.yaml")
    record = {"versions": environment.versions(), "environment": environment.allowed_environment()}
    run.log_text(yaml.safe_dump(record, sort_keys=True), "config/environment.yaml")
    diff = environment.git_diff(project_root())
    if diff:
        run.log_text(diff, "config/git_diff.patch")
