"""Turn a composed config into the objects Lightning needs: data, model, callbacks, loggers, trainer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from explab.callbacks import LastCheckpoint, NonFiniteLossGuard, RecordInCheckpoint, ResumedTraining
from explab.callbacks.accumulation import AccumulationPastTheEpoch
from explab.callbacks.checkpoint_on_signal import CheckpointOnSignal
from explab.callbacks.last_epoch import ValidateTheLastEpoch
from explab.callbacks.random_state import RandomStateInCheckpoint
from explab.callbacks.resumed_batch_count import ResumedBatchCount
from explab.callbacks.steps_end import ValidateWhereStepsEnd
from explab.callbacks.system_metrics import SystemMetrics
from explab.callbacks.time_to import TimeToThreshold
from explab.checkpoint_io import AtomicCheckpointIO
from explab.data.base import TensorDataModule
from explab.errors import UsageError
from explab.models import TaskModule
from explab.monitor_mode import after_validation, settle_modes
from explab.precision import training_precision
from explab.requeue import is_slurm_task
from explab.tracking.logger_node import is_mlflow_logger, mlflow_logger_node
from explab.tracking.params import recordable
from explab.tracking.store import open_client
from explab.utils.distributed import configure_threads
from explab.utils.logging import get_logger, tidy_lightning_logging

if TYPE_CHECKING:
    from explab.sweep.trial import TrialJob
    from explab.tracking import TrackedRun

log = get_logger(__name__)


@dataclass
class Job:
    """One training job, built from its config: what ``fit_and_test`` runs and the record describes."""

    cfg: DictConfig
    datamodule: TensorDataModule
    model: TaskModule
    trainer: L.Trainer


def build_job(cfg: DictConfig, run: TrackedRun | None, trial: TrialJob) -> Job:
    """Threads and seeds first, then data, model, every callback and the trainer; the data is loaded here,
    before the fit's clock starts. ``run`` is None when tracking is off and on ranks other than 0.

    Each ``mode: auto`` in ``cfg`` is settled to min or max before anything is built, in place, so the run
    records the mode its callbacks and scheduler use.
    """
    settle_modes(cfg)
    configure_threads(cfg)
    tidy_lightning_logging()  # before Lightning's first message, the seed
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg)
    run_id = run.run_id if run is not None else None
    has_logger = mlflow_logger_node(cfg) is not None
    callbacks = build_callbacks(cfg, run_id, has_logger, trial, resumed_run=run if cfg.get("resume") else None)
    trainer = build_trainer(cfg, callbacks=callbacks, loggers=build_loggers(cfg, run_id))
    datamodule.ensure_loaded()
    return Job(cfg, datamodule, model, trainer)


def build_datamodule(cfg: DictConfig) -> TensorDataModule:
    with settings_refused_by_key("data"):
        return instantiate(cfg.data, _convert_="partial")


@contextmanager
def settings_refused_by_key(section: str) -> Iterator[None]:
    """Raises a constructor's ``ValueError`` refusing the values it was given (``depth=0`` for a ConvNet, two
    ``std`` values for three channels) as a ``UsageError`` naming the config key, since the config is what to
    fix; any other failure is raised as it is. ``section`` names the key where Hydra's error does not."""
    try:
        yield
    except InstantiationException as error:
        if not isinstance(error.__cause__, ValueError):
            raise
        key = re.search(r"full_key: (\S+)", str(error))
        raise UsageError(
            f"{key.group(1) if key else section}: {error.__cause__}. Change it on the command line or in the "
            "experiment's YAML"
        ) from error


# the nodes of a config that ``build_model`` instantiates: what the network, and so the logged model, is built from
NETWORK_KEYS = ("model", "optimizer", "scheduler")


def build_model(cfg: DictConfig) -> TaskModule:
    """The task module of ``cfg``: ``model`` with its ``optimizer`` and ``scheduler`` factories."""
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return instantiate(cfg.model, optimizer=optimizer, scheduler=scheduler, _convert_="partial")


def task_class(cfg: DictConfig) -> type[TaskModule] | None:
    """The ``TaskModule`` class ``model._target_`` names; None for a model that is not one of explab's tasks,
    whose metrics explab cannot know before it trains."""
    target = OmegaConf.select(cfg, "model._target_", default=None)
    task = get_class(str(target)) if target else None
    return task if isinstance(task, type) and issubclass(task, TaskModule) else None


def meta_model(cfg: DictConfig) -> TaskModule | None:
    """The task module of ``cfg`` built on the meta device, for checks made before a run exists: no memory, no
    initialisation, so a large model costs no more to check than a small one. None for a module whose
    constructor computes with its tensors (``.item()``, a loaded file), or a config that cannot be built."""
    import torch

    try:
        with torch.device("meta"):
            return build_model(cfg)
    except Exception:
        return None


def task_metric_names(cfg: DictConfig) -> set[str]:
    """Every metric the task module of ``cfg`` logs (``TaskModule.metric_names``), for checks made before a
    run exists; from the module on the meta device (``meta_model``) where it can be built there."""
    import torch

    model = meta_model(cfg)
    if model is not None:
        try:
            with torch.device("meta"):  # the training curve's names are probed with tensors of the model's kind
                return model.metric_names()
        except Exception:
            pass
    # a module whose constructor computes with its tensors (``.item()``, a loaded file) needs real ones; a
    # config that cannot be built fails here again, with its own error
    with settings_refused_by_key("model"):
        return build_model(cfg).metric_names()


def build_callbacks(
    cfg: DictConfig,
    run_id: str | None,
    has_logger: bool,
    trial: TrialJob | None = None,
    resumed_run: TrackedRun | None = None,
) -> list[L.Callback]:
    """Every callback a job gets: the configured ones, explab's own guards and record, the trial's, and on a
    resume the one that tells the reopened run when training goes on."""
    callbacks: list[L.Callback] = []
    progress_bar_on = cfg.trainer.get("enable_progress_bar", True)
    validating = validates(cfg)
    for name, node in (cfg.get("callbacks") or {}).items():
        if not node or "_target_" not in node:
            continue
        callback = instantiate(node, _convert_="partial")
        if isinstance(callback, LearningRateMonitor) and not has_logger:
            log.info("callbacks.%s skipped: it needs a logger and logger is off", name)
            continue
        if not validating and after_validation(getattr(callback, "monitor", None) or ""):
            log.info("callbacks.%s skipped: it follows %s and the fit does not validate", name, callback.monitor)
            continue
        if isinstance(callback, ProgressBar) and not progress_bar_on:
            continue
        callbacks.append(callback)
    callbacks.append(NonFiniteLossGuard())
    if validating and cfg.trainer.get("max_steps", -1) not in (None, -1):
        callbacks.append(ValidateWhereStepsEnd())
    every_n_epochs = cfg.trainer.get("check_val_every_n_epoch", 1)
    if validating and (every_n_epochs is None or every_n_epochs > 1):
        callbacks.append(ValidateTheLastEpoch())
    if (cfg.trainer.get("accumulate_grad_batches") or 1) > 1:
        callbacks.append(AccumulationPastTheEpoch())
    if validating and str(cfg.get("monitor") or "").startswith("train/"):
        log.warning(
            "monitor=%s chooses the best checkpoint, and when to stop early, by the training data, which the "
            "model fits better the longer it trains: the test then reads late weights however they generalise. "
            "Follow a val/ metric (val/loss, val/acc), which this fit computes",
            cfg.monitor,
        )
    if not any(isinstance(c, EarlyStopping) for c in callbacks) and _without_end(cfg.trainer):
        log.warning(
            "the run has no end: trainer.max_epochs=-1 with no trainer.max_steps, trainer.max_time or early "
            "stopping that runs%s. It trains until it is stopped, and a stop (Ctrl-C) ends it KILLED and untested: "
            "give trainer.max_epochs, +trainer.max_time or callbacks.early_stopping",
            "" if validating else " (early stopping needs validation, and this fit has none)",
        )
    last = next((c for c in callbacks if isinstance(c, LastCheckpoint)), None)
    if last is not None:
        callbacks.append(CheckpointOnSignal(last, requeue_on_usr1=is_slurm_task()))
    if cfg.get("time_to"):
        callbacks.append(TimeToThreshold(cast(dict[str, Any], OmegaConf.to_container(cfg.time_to))))
    tracking = mlflow_logger_node(cfg)
    if tracking is not None and cfg.get("system_metrics_seconds"):
        resumed = bool(cfg.get("resume"))
        callbacks.append(SystemMetrics(tracking.tracking_uri, run_id, cfg.system_metrics_seconds, resumed))
    callbacks.append(RecordInCheckpoint(recordable(cfg), run_id))
    callbacks.append(RandomStateInCheckpoint())
    callbacks.append(ResumedBatchCount())
    if trial is not None:
        callbacks.extend(trial.callbacks())
    if resumed_run is not None:
        callbacks.append(ResumedTraining(resumed_run, cfg))
    return callbacks


def build_loggers(cfg: DictConfig, run_id: str | None) -> list[Logger]:
    loggers: list[Logger] = []
    for node in (cfg.get("logger") or {}).values():
        if not node or "_target_" not in node:
            continue
        extra: dict[str, Any] = {}
        if is_mlflow_logger(node):
            # MLFlowLogger opens the store on every rank as it is built; ranks that SLURM starts together
            # would all create a new store at once, so each opens it first, one after another
            open_client(node.tracking_uri)
            extra["run_id"] = run_id
        loggers.append(instantiate(node, **extra))
    return loggers


def has_validation_split(cfg: DictConfig) -> bool:
    """False when the data is configured to train on everything (``data.val_size=0`` or
    ``data.val_fraction=0``): then nothing selects on validation, and the last checkpoint is the one tested."""
    data = cfg.get("data") or {}
    return data.get("val_size", None) != 0 and data.get("val_fraction", None) != 0


def _without_end(trainer: DictConfig) -> bool:
    """Whether nothing in the trainer's settings ends the fit: Lightning reads ``max_epochs=-1`` as no limit
    (and ``null`` as 1000 epochs where ``max_steps`` sets none)."""
    return (
        trainer.get("max_epochs") == -1 and trainer.get("max_steps", -1) in (None, -1) and not trainer.get("max_time")
    )


def validates(cfg: DictConfig) -> bool:
    """Whether the fit validates: the data holds out a validation split and the trainer runs it (Lightning's
    ``trainer.limit_val_batches=0`` turns it off). Without it the callbacks that follow a ``val/`` metric are
    left out, and the last checkpoint is the one tested."""
    return has_validation_split(cfg) and (cfg.get("trainer") or {}).get("limit_val_batches", None) != 0


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback], loggers: list[Logger]) -> L.Trainer:
    no_validation = {} if validates(cfg) else {"limit_val_batches": 0, "num_sanity_val_steps": 0}
    # checkpoints are written atomically in their own folder, whatever filesystem $TMPDIR is on
    precision = training_precision(cfg.trainer)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        # plain dicts and lists: Lightning reads max_time={hours: 12} as a timedelta's arguments only from a dict
        _convert_="partial",
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO(), *cluster_plugins(callbacks)],
        precision=precision,
        **no_validation,
    )
    _warn_if_precision_changed(precision, trainer)
    return trainer


def cluster_plugins(callbacks: list[L.Callback]) -> list[ClusterEnvironment]:
    """SLURM's environment without Lightning's auto-requeue where ``CheckpointOnSignal`` requeues the job:
    Lightning's handler writes ``hpc_ckpt_N.ckpt``, a second full checkpoint that nothing reads (the next
    attempt continues from ``last.ckpt``), in the grace time before the kill, and one more at every
    requeue. Anywhere else Lightning picks the environment itself."""
    if any(isinstance(c, CheckpointOnSignal) and c.requeue_on_usr1 for c in callbacks):
        return [SLURMEnvironment(auto_requeue=False)]
    return []


def _warn_if_precision_changed(asked: str, trainer: L.Trainer) -> None:
    """Warns where the trainer computes in other than what was asked: float16 autocast becomes bfloat16 on a
    CPU. A short name Lightning reads as its current one (``bf16`` for ``bf16-mixed``) Lightning warns of."""
    if trainer.precision == "bf16-mixed" and asked in ("16", "16-mixed"):
        log.warning(
            "trainer.precision=%s runs as bf16-mixed on this %s (fp16 autocast needs a GPU); ask for "
            "trainer.precision=bf16-mixed to make this explicit",
            asked,
            type(trainer.accelerator).__name__,
        )
