"""Every config in conf/ and experiments/ composes, and the objects it describes instantiate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from explab.build import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_model,
    build_trainer,
    task_metric_names,
)
from explab.config import config_dir
from explab.models import TaskModule
from explab.models.tasks import build_scheduler
from explab.monitor_mode import settle_modes
from explab.validation import validate_config
from hydra_plugins.explab_optuna_sweeper.config import PRUNERS, SAMPLERS
from tests.support.formats import write_mnist

CONF = config_dir()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


EXPERIMENTS = options("experiment")
# groups whose options are swapped in on top of the default experiment
GROUPS = ["optimizer", "scheduler", "trainer", "precision", "callbacks", "checkpoint", "logger", "model"]
# models that need their own data (a vocabulary size, say) are checked inside their experiment
MODEL_EXPERIMENT = {
    "text_rnn": "rotten_tomatoes_sentiment",
    "bag_of_ngrams": "rotten_tomatoes_fasttext",
    "mlp_regressor": "diabetes_mlp",
}


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
    experiment = MODEL_EXPERIMENT.get(option) if group == "model" else None
    cfg = compose_cfg(f"{group}={option}", *([f"experiment={experiment}"] if experiment else []))
    if group in ("optimizer", "scheduler", "model"):
        model = build_model(cfg)
        fake_trainer = SimpleNamespace(
            estimated_stepping_batches=100, max_epochs=5, max_steps=-1, check_val_every_n_epoch=1
        )
        optimizer = model.optimizer_factory(params=model.parameters())
        assert optimizer.defaults["lr"] == cfg.optimizer.lr
        if model.scheduler_factory is not None:
            scheduler = build_scheduler(model.scheduler_factory, optimizer, fake_trainer)
            assert scheduler["interval"] in ("step", "epoch")
        if group in ("optimizer", "scheduler") and cfg.get(group):
            assert cfg[group]._partial_ is True
    elif group == "trainer":
        if cfg.trainer.accelerator == "gpu":
            assert cfg.trainer.devices == -1 or cfg.trainer.devices >= 1  # composes; no GPU needed to check it
        else:
            assert isinstance(build_trainer(cfg, callbacks=[], loggers=[]), L.Trainer)
    elif group == "precision":
        trainer = build_trainer(cfg, callbacks=[], loggers=[])
        # 16-mixed on a CPU runs as bf16-mixed; auto as what this machine computes natively
        assert trainer.precision in (option, "bf16-mixed", "32-true" if option == "auto" else option)
    elif group in ("callbacks", "checkpoint"):
        settle_modes(cfg)  # as build_job does first: monitor_mode auto becomes min or max
        callbacks = build_callbacks(cfg, run_id=None, has_logger=True)
        assert all(isinstance(c, L.Callback) for c in callbacks)
        assert any(isinstance(c, ModelCheckpoint) for c in callbacks) == (option != "none" or group == "callbacks")
    elif group == "logger":
        loggers = build_loggers(cfg, run_id=None)
        assert (option == "none") == (loggers == [])


@pytest.mark.parametrize("max_time", ["{minutes:5}", "00:00:05:00"])
def test_a_time_limit_reaches_lightnings_timer_in_either_form_the_config_takes(compose_cfg, max_time: str) -> None:
    """``+trainer.max_time={hours: 12}`` passed the config check and then failed the run: Lightning reads a
    mapping as a timedelta's arguments only from a dict, and Hydra handed it a DictConfig."""
    from lightning.pytorch.callbacks import Timer

    trainer = build_trainer(compose_cfg(f"+trainer.max_time={max_time}"), callbacks=[], loggers=[])
    [timer] = [c for c in trainer.callbacks if isinstance(c, Timer)]
    assert timer.time_remaining() == 300


def test_every_object_node_has_a_target() -> None:
    """A group file either describes an object (``_target_``), or holds named objects, or is empty/global."""
    import yaml

    for path in sorted(CONF.rglob("*.yaml")):
        parts = path.relative_to(CONF).parts
        if parts[0] in ("paths", "hparams_search", "local") or parts[:2] == ("hydra", "default.yaml"):
            continue
        if len(parts) == 1:
            continue
        text = path.read_text()
        data = yaml.safe_load(text) or {}
        if "# @package " in text:  # sets a value elsewhere (scheduler: null, pruner: null)
            continue
        body = {k: v for k, v in data.items() if k != "defaults"}
        if not body:
            continue
        if path.parent.name in ("callbacks", "logger"):
            assert all(isinstance(v, dict) and "_target_" in v for v in body.values()), path
        else:
            assert "_target_" in body or "defaults" in data, path


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("search", options("hparams_search"))
def test_search_configs_build_their_sampler(search: str, sampler: str, compose_cfg, tmp_path: Path) -> None:
    from hydra.utils import get_method

    from explab.sweep.space import grid_of, parse_search_space

    cfg = compose_cfg(f"hparams_search={search}", f"hydra/sweeper/sampler={sampler}")
    if str(cfg.data._target_).endswith("IDXDataModule"):  # mnist_optuna's recipe: the check finds its files
        cfg.data.data_dir = str(write_mnist(tmp_path / "mnist"))
    sweeper = cfg.hydra.sweeper
    params = OmegaConf.to_container(sweeper.params) if sweeper.params is not None else None
    if search == "optuna":  # the base of the others: its space comes from the command line
        assert params is None
        params = {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))"}
    space, _ = parse_search_space(params, [])
    assert space, "every search config defines a search space"
    import optuna

    from explab.sweep.space import SearchSpaceError

    extra = {}
    if sampler == "grid":
        try:
            extra = {"search_space": grid_of(space)}
        except SearchSpaceError as err:  # continuous ranges have no grid: said plainly, before any trial
            assert "a grid needs discrete values" in str(err)
            return

    assert isinstance(instantiate(sweeper.sampler, **extra), optuna.samplers.BaseSampler)
    get_method(sweeper.check.replace(":", "."))(cfg, sweeper.metric)


@pytest.mark.parametrize("pruner", sorted([*PRUNERS, "none"]))
def test_pruner_options_instantiate(pruner: str, compose_cfg) -> None:
    import optuna

    cfg = compose_cfg("hparams_search=digits_optuna", f"hydra/sweeper/pruner={pruner}")
    node = cfg.hydra.sweeper.pruner
    assert (node is None) == (pruner == "none")
    if node is not None:
        overrides = {"lower": 0.5} if pruner == "threshold" else {}
        assert isinstance(instantiate(node, **overrides), optuna.pruners.BasePruner)


def test_slurm_launcher_composes(compose_cfg) -> None:
    cfg = compose_cfg(
        "hydra/launcher=slurm", "trainer=multinode", "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4"
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 4, 4)
    assert (cfg.trainer.num_nodes, cfg.trainer.strategy) == (2, "ddp")


def test_task_metric_names_builds_a_model_that_needs_real_tensors(compose_cfg) -> None:
    """Pre-run checks build the task on the meta device; a constructor that reads its weights needs real ones."""
    measured = compose_cfg(
        "~model.backbone", "+model.backbone={_target_: tests.support.models.MeasuredNet, num_outputs: 10}"
    )
    assert task_metric_names(measured) == task_metric_names(compose_cfg()) and "val/acc" in task_metric_names(measured)
    validate_config(measured)


@pytest.mark.parametrize("option", [o for o in options("trainer") if o != "default"])
def test_a_trainer_presets_settings_reach_the_trainer(option: str, compose_cfg) -> None:
    """The experiment overlay comes after the trainer group, so a preset's setting that every experiment also
    sets (``max_epochs: 2`` in ``limit_batches``) never applied, while its file said it did."""
    import yaml

    preset = yaml.safe_load((CONF / "trainer" / f"{option}.yaml").read_text())
    cfg = compose_cfg(f"trainer={option}")
    for key, value in preset.items():
        if key != "defaults":
            composed = OmegaConf.to_container(cfg.trainer)[key]  # type: ignore[index]
            assert composed == value, f"trainer/{option}.yaml sets {key}: {value}, the trainer gets {composed}"


@pytest.mark.parametrize(
    ("overrides", "without_end"),
    [
        (["callbacks=none"], True),  # trained until Ctrl-C ended it KILLED, untested, without a word
        (["data.val_fraction=0"], True),  # early stopping is left out of a fit that does not validate
        ([], False),  # early stopping ends it
        (["callbacks=none", "+trainer.max_steps=30"], False),
        (["callbacks=none", "+trainer.max_time={hours:1}"], False),
    ],
)
def test_a_fit_that_nothing_ends_is_warned_of(compose_cfg, caplog, overrides: list[str], without_end: bool) -> None:
    import logging

    caplog.set_level(logging.WARNING, logger="explab")
    cfg = compose_cfg("scheduler=none", "trainer.max_epochs=-1", *overrides)
    settle_modes(cfg)  # as build_job does first
    build_callbacks(cfg, run_id=None, has_logger=False)
    assert ("the run has no end: trainer.max_epochs=-1 with no trainer.max_steps" in caplog.text) == without_end
    assert ("early stopping needs validation" in caplog.text) == ("data.val_fraction=0" in overrides)


def test_a_data_module_that_fails_otherwise_than_refusing_a_setting_is_raised_as_it_is() -> None:
    """Only a constructor's ValueError is the config's to fix; a TypeError (a string for a statistic) keeps
    Hydra's error, whose cause is the TypeError, not the error itself."""
    from hydra.errors import InstantiationException

    from explab.build import build_datamodule

    cfg = OmegaConf.create({"data": {"_target_": "explab.data.CIFAR10DataModule", "data_dir": "x", "std": "abc"}})
    with pytest.raises(InstantiationException) as raised:
        build_datamodule(cfg)
    assert isinstance(raised.value.__cause__, TypeError)


@pytest.mark.parametrize(("overrides", "warned"), [([], True), (["data.val_fraction=0"], False)])
def test_a_best_checkpoint_chosen_by_a_training_metric_is_warned_of_where_validation_runs(
    compose_cfg, caplog, overrides: list[str], warned: bool
) -> None:
    """``monitor=train/loss`` beside a validation split chose the checkpoint the model fitted its training data
    best with, without a word; a fit without validation has nothing else to follow."""
    import logging

    caplog.set_level(logging.WARNING, logger="explab")
    cfg = compose_cfg("monitor=train/loss", *overrides)
    settle_modes(cfg)
    build_callbacks(cfg, run_id=None, has_logger=False)
    said = "monitor=train/loss chooses the best checkpoint, and when to stop early, by the training data"
    assert (said in caplog.text) == warned, caplog.text
