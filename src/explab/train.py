"""``explab-train``: compose an experiment, fit and test it, record it in MLflow, return its metrics.

``train(cfg)`` is the whole job and is what sweeps call; ``main`` is the thin Hydra entry point.
"""

from __future__ import annotations

import contextlib
import json
import time
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
from explab.utils.distributed import configure_threads, ranks_rerun_this_job
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
    from explab.reproduce import check_fingerprint
    from explab.sweep.trial import TrialJob
    from explab.tracking.record import record_config

    trial = TrialJob(cfg)
    logger_cfg = mlflow_logger_node(cfg)
    run = _open_run(cfg, logger_cfg, trial) if logger_cfg is not None else None
    configure_threads(cfg)
    L.seed_everything(cfg.seed, workers=True)
    run_id = run.run_id if run else None
    lifecycle = run.lifecycle() if run is not None else contextlib.nullcontext()
    with lifecycle, trial.record_state(run), ranks_rerun_this_job():
        datamodule = build_datamodule(cfg)
        model = build_model(cfg)
        if run is not None and not cfg.get("resume"):
            record_config(run, cfg)
        callbacks = build_callbacks(cfg, run_id, has_logger=logger_cfg is not None) + trial.callbacks()
        trainer = build_trainer(cfg, callbacks=callbacks, loggers=build_loggers(cfg, run_id))
        _warn_if_precision_changed(cfg, trainer)
        datamodule.prepare()  # data loads before the fit's clock starts, logged or not
        if run is not None:
            run.set_tags(
                {
                    "data.fingerprint": datamodule.fingerprint,
                    **{f"data.{k}": v for k, v in datamodule.summary().items()},
                    "trainer.precision_effective": trainer.precision,
                    "trainer.world_size": trainer.world_size,
                }
            )
            for name, record in datamodule.preprocessing().items():
                run.log_text(json.dumps(record), f"preprocessing/{name}")
            if cfg.get("reproduce"):
                check_fingerprint(str(cfg.reproduce), datamodule.fingerprint, run.client)
        start = time.perf_counter()
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        # wall time of the whole fit (sanity check, epochs, validation, checkpoints, logging): sweeps and
        # benchmarks compare it with the job's total time
        metrics = {**_as_floats(trainer.callback_metrics), "perf/fit_seconds": time.perf_counter() - start}
        if run is not None:
            run.log_metrics({"perf/fit_seconds": metrics["perf/fit_seconds"]}, step=trainer.global_step)
        trial.raise_if_pruned()
        if cfg.get("test", True):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            metrics.update(_as_floats(trainer.callback_metrics))
        trial.check_objective(metrics)
        if run is not None:
            _log_best_checkpoint(run, trainer)
            if cfg.get("log_plots", True):
                from explab.tracking.plots import log_run_plots

                log_run_plots(run, model)
            if cfg.get("log_model", True):
                from explab.tracking.model import log_model

                log_model(run, model, datamodule.input_example, cfg.get("registered_model_name"))
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


def _open_run(cfg: DictConfig, logger_cfg: DictConfig, trial: Any) -> Any:
    """A new run, or with ``resume=RUN_ID`` the same run again (rank 0 only; None on other ranks)."""
    from lightning.pytorch.utilities import rank_zero_only

    from explab.tracking import TrackedRun
    from explab.tracking.record import start_run

    if rank_zero_only.rank != 0:
        return None
    if cfg.get("resume"):
        run = TrackedRun.reopen(logger_cfg.tracking_uri, str(cfg.resume))
        run.set_tags({"explab.resumed_from_checkpoint": cfg.ckpt_path})
        return run
    extra = {**trial.tags(), **({"explab.reproduced_from": cfg.reproduce} if cfg.get("reproduce") else {})}
    return start_run(logger_cfg, cfg, extra, trial.run_name())


def _warn_if_precision_changed(cfg: DictConfig, trainer: L.Trainer) -> None:
    asked = str(cfg.trainer.get("precision", "32-true"))
    if trainer.precision != asked:
        log.warning(
            "trainer.precision=%s runs as %s on this %s (fp16 autocast needs a GPU); ask for "
            "trainer.precision=%s to make this explicit",
            asked,
            trainer.precision,
            type(trainer.accelerator).__name__,
            trainer.precision,
        )


def _log_best_checkpoint(run, trainer: L.Trainer) -> None:
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "")
    if path:
        run.log_file(path, "checkpoints")
        run.set_tags({"explab.best_checkpoint": f"checkpoints/{path.rsplit('/', 1)[-1]}"})


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _hydra_main(cfg: DictConfig) -> dict[str, float]:
    from explab.reproduce import rebuild

    return train(rebuild(cfg))


def main() -> None:
    """Console script ``explab-train``."""
    from explab.cli import run_hydra_app

    run_hydra_app(_hydra_main, config_name="train")


if __name__ == "__main__":
    main()
