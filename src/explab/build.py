"""Turn a composed config into the objects Lightning needs: data, model, callbacks, loggers, trainer."""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import Logger, MLFlowLogger
from omegaconf import DictConfig, OmegaConf

from explab.callbacks import NonFiniteLossGuard, RecordInCheckpoint
from explab.models import TaskModule
from explab.utils.logging import drop_lightning_tips, get_logger

log = get_logger(__name__)


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    return instantiate(cfg.data, _convert_="partial")


def build_model(cfg: DictConfig) -> TaskModule:
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return instantiate(cfg.model, optimizer=optimizer, scheduler=scheduler, _convert_="partial")


def build_callbacks(cfg: DictConfig, run_id: str | None, has_logger: bool) -> list[L.Callback]:
    callbacks: list[L.Callback] = []
    progress_bar_on = cfg.trainer.get("enable_progress_bar", True)
    for name, node in (cfg.get("callbacks") or {}).items():
        if not node or "_target_" not in node:
            continue
        callback = instantiate(node, _convert_="partial")
        if isinstance(callback, LearningRateMonitor) and not has_logger:
            log.info("callbacks.%s skipped: it needs a logger and logger is off", name)
            continue
        if isinstance(callback, ProgressBar) and not progress_bar_on:
            continue
        callbacks.append(callback)
    callbacks.append(NonFiniteLossGuard())
    callbacks.append(RecordInCheckpoint(OmegaConf.to_container(cfg, resolve=True), run_id))
    return callbacks


def build_loggers(cfg: DictConfig, run_id: str | None) -> list[Logger]:
    loggers: list[Logger] = []
    for node in (cfg.get("logger") or {}).values():
        if not node or "_target_" not in node:
            continue
        extra: dict[str, Any] = {"run_id": run_id} if is_mlflow_logger(node) else {}
        loggers.append(instantiate(node, **extra))
    return loggers


def is_mlflow_logger(node: DictConfig) -> bool:
    return issubclass(get_class(node._target_), MLFlowLogger)


def mlflow_logger_node(cfg: DictConfig) -> DictConfig | None:
    """The config of the MLflow logger, which also says where the run lives; None when tracking is off."""
    for node in (cfg.get("logger") or {}).values():
        if node and "_target_" in node and is_mlflow_logger(node):
            return node
    return None


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback], loggers: list[Logger]) -> L.Trainer:
    drop_lightning_tips()
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
