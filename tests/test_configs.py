"""Every config in conf/ and experiments/ composes, and the objects it describes instantiate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest

from explab.build import build_callbacks, build_datamodule, build_loggers, build_model, build_trainer
from explab.config import config_dir
from explab.models import TaskModule
from explab.models.tasks import build_scheduler

CONF = config_dir()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


EXPERIMENTS = options("experiment")
# groups whose options are swapped in on top of the default experiment
GROUPS = ["optimizer", "scheduler", "trainer", "callbacks", "logger", "model"]


def test_experiments_folder_is_the_experiment_group() -> None:
    assert (CONF / "experiment").resolve() == (CONF.parent / "experiments").resolve()
    assert "digits_cnn" in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_builds(experiment: str, compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(f"experiment={experiment}", f"paths.data_dir={tmp_path}/data")
    assert cfg.experiment_name, "every experiment names its MLflow experiment"
    model = build_model(cfg)
    assert isinstance(model, TaskModule)
    assert isinstance(build_datamodule(cfg), L.LightningDataModule)


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_group_option_instantiates(group: str, option: str, compose_cfg) -> None:
    cfg = compose_cfg(f"{group}={option}")
    if group in ("optimizer", "scheduler", "model"):
        model = build_model(cfg)
        fake_trainer = SimpleNamespace(estimated_stepping_batches=100, max_epochs=5)
        optimizer = model.optimizer_factory(params=model.parameters())
        assert optimizer.defaults["lr"] == cfg.optimizer.lr
        if model.scheduler_factory is not None:
            scheduler = build_scheduler(model.scheduler_factory, optimizer, fake_trainer)
            assert scheduler["interval"] in ("step", "epoch")
        if group in ("optimizer", "scheduler") and cfg.get(group):
            assert cfg[group]._partial_ is True
    elif group == "trainer":
        if cfg.trainer.accelerator == "gpu":
            assert cfg.trainer.devices >= 1  # composes; a GPU is not needed to check the config
        else:
            assert isinstance(build_trainer(cfg, callbacks=[], loggers=[]), L.Trainer)
    elif group == "callbacks":
        callbacks = build_callbacks(cfg, run_id=None, has_logger=True)
        assert all(isinstance(c, L.Callback) for c in callbacks)
    elif group == "logger":
        loggers = build_loggers(cfg, run_id=None)
        assert (option == "none") == (loggers == [])


def test_every_object_node_has_a_target() -> None:
    """A group file either describes an object (``_target_``), or holds named objects, or is empty/global."""
    import yaml

    for path in sorted(CONF.rglob("*.yaml")):
        if path.parent.name in ("hydra", "paths", "hparams_search", "local") or path.parent == CONF:
            continue
        text = path.read_text()
        data = yaml.safe_load(text) or {}
        if "# @package _global_" in text:
            continue
        body = {k: v for k, v in data.items() if k != "defaults"}
        if not body:
            continue
        if path.parent.name in ("callbacks", "logger"):
            assert all(isinstance(v, dict) and "_target_" in v for v in body.values()), path
        else:
            assert "_target_" in body or "defaults" in data, path
