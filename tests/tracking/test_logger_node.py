"""Finding the MLflow logger in a config, by name where the target is known, by class otherwise."""

from __future__ import annotations

import pytest
from hydra.utils import get_class
from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import OmegaConf

from explab.tracking.logger_node import MLFLOW_LOGGERS, is_mlflow_logger, mlflow_logger_node


class LabLogger(MLFlowLogger):
    """A lab's own MLflow logger, named by a target explab does not know."""


@pytest.mark.parametrize("target", sorted(MLFLOW_LOGGERS))
def test_the_loggers_known_by_name_are_mlflow_loggers(target: str) -> None:
    """A rename in Lightning or explab would make a name match nothing, or the wrong class."""
    assert issubclass(get_class(target), MLFlowLogger)


def test_any_other_target_is_asked_for_its_class() -> None:
    assert is_mlflow_logger(OmegaConf.create({"_target_": f"{__name__}.LabLogger"}))
    assert not is_mlflow_logger(OmegaConf.create({"_target_": "lightning.pytorch.loggers.CSVLogger"}))


def test_the_mlflow_node_is_found_among_the_loggers() -> None:
    csv = {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": "."}
    mlflow = {"_target_": "explab.tracking.logger.RunLogger", "tracking_uri": "sqlite:///x.db"}
    cfg = OmegaConf.create({"logger": {"csv": csv, "mlflow": mlflow, "off": None}})
    found = mlflow_logger_node(cfg)
    assert found is not None and found.tracking_uri == "sqlite:///x.db"
    assert mlflow_logger_node(OmegaConf.create({"logger": {"csv": csv}})) is None
    assert mlflow_logger_node(OmegaConf.create({"logger": None})) is None
