"""Which of a config's loggers is the MLflow one: the node that says where a run lives.

Read before any run exists (a ``resume=`` checked against its run, a requeued job finding its store), where
importing Lightning would cost seconds for a refusal that needs none of it.
"""

from __future__ import annotations

from omegaconf import DictConfig

# explab's logger and Lightning's own, known by name; any other target is imported to ask
MLFLOW_LOGGERS = frozenset(
    {
        "explab.tracking.logger.RunLogger",
        "lightning.pytorch.loggers.MLFlowLogger",
        "lightning.pytorch.loggers.mlflow.MLFlowLogger",
    }
)


def is_mlflow_logger(node: DictConfig) -> bool:
    """Whether ``node`` configures Lightning's ``MLFlowLogger`` or a subclass of it (a lab's own logger)."""
    target = str(node._target_)
    if target in MLFLOW_LOGGERS:
        return True
    from hydra.utils import get_class
    from lightning.pytorch.loggers import MLFlowLogger

    return issubclass(get_class(target), MLFlowLogger)


def mlflow_logger_node(cfg: DictConfig) -> DictConfig | None:
    """The config of the MLflow logger, which also says where the run lives; None when tracking is off."""
    for node in (cfg.get("logger") or {}).values():
        if node and "_target_" in node and is_mlflow_logger(node):
            return node
    return None
