"""``explab-train``: compose an experiment, fit and test it, record it in MLflow, return its metrics.

``train(cfg)`` is the whole job and is what sweeps call; ``main`` is the thin Hydra entry point.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig

from explab.build import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_model,
    build_trainer,
    mlflow_logger_node,
)
from explab.config import config_dir
from explab.utils.logging import get_logger

log = get_logger(__name__)


def _as_floats(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        with contextlib.suppress(TypeError, ValueError):
            out[key] = float(value)
    return out


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the model described by ``cfg``, test its best checkpoint, and return every final metric."""
    from explab.tracking.record import record_config, start_run

    L.seed_everything(cfg.seed, workers=True)
    logger_cfg = mlflow_logger_node(cfg)
    run = start_run(logger_cfg, cfg) if logger_cfg is not None else None
    with run.lifecycle() if run is not None else contextlib.nullcontext():
        datamodule = build_datamodule(cfg)
        model = build_model(cfg)
        if run is not None:
            record_config(run, cfg)
        trainer = build_trainer(
            cfg,
            callbacks=build_callbacks(cfg, run.run_id if run else None, has_logger=logger_cfg is not None),
            loggers=build_loggers(cfg, run.run_id if run else None),
        )
        if run is not None:
            datamodule.prepare()
            run.set_tags(
                {
                    "data.fingerprint": datamodule.fingerprint,
                    **{f"data.{k}": v for k, v in datamodule.summary().items()},
                }
            )
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = _as_floats(trainer.callback_metrics)
        if cfg.get("test", True):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            metrics.update(_as_floats(trainer.callback_metrics))
        if run is not None:
            _log_best_checkpoint(run, trainer)
    if run is not None:
        summary = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("test/"))
        log.info(
            "MLflow run %s FINISHED (%s) in %s; UI: make ui, then http://127.0.0.1:5000/%s",
            run.run_id,
            summary,
            run.tracking_uri,
            run.ui_hint(),
        )
    return metrics


def _log_best_checkpoint(run, trainer: L.Trainer) -> None:
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "")
    if path:
        run.log_file(path, "checkpoints")
        run.set_tags({"explab.best_checkpoint": f"checkpoints/{path.rsplit('/', 1)[-1]}"})


def objective_value(metrics: dict[str, float], name: str) -> float:
    """The metric a sweep optimises; a clear error when it is missing, NaN when the run diverged."""
    if name not in metrics:
        raise KeyError(f"metric '{name}' was not produced; available: {sorted(metrics)}")
    return metrics[name] if math.isfinite(metrics[name]) else math.nan


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _hydra_main(cfg: DictConfig) -> dict[str, float]:
    return train(cfg)


def main() -> None:
    """Console script ``explab-train``."""
    from explab.cli import run_hydra_app

    run_hydra_app(_hydra_main, config_name="train")


if __name__ == "__main__":
    main()
