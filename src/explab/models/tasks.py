"""Task modules: the training logic around any backbone (loss, metrics, optimisation), one per task kind."""

from __future__ import annotations

import inspect
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import GradClipAlgorithmType
from torch import Tensor, nn
from torchmetrics import (
    MaxMetric,
    MeanAbsoluteError,
    MeanMetric,
    MeanSquaredError,
    Metric,
    MetricCollection,
    MinMetric,
    R2Score,
)
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from explab.callbacks.stock import warn_of_patience_in_validations
from explab.checkpoints import CHECKPOINT_KEY, COMPILED, EPOCH_SUMS_KEY, plain_weights
from explab.errors import UsageError
from explab.models.epoch_sums import EpochSums
from explab.models.gradient_clipping import clip_gradients, has_sparse_gradients
from explab.models.init import initialise
from explab.models.restored_optimizer import apply_changed_settings, changed_settings
from explab.models.schedules import filled_from_trainer
from explab.monitor_mode import after_validation
from explab.utils.epoch_progress import written_mid_epoch
from explab.utils.logging import get_logger

log = get_logger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def factory_fills(factory: SchedulerFactory) -> list[str]:
    """What :func:`build_scheduler` fills in from the trainer for the scheduler partial ``factory``."""
    return filled_from_trainer(getattr(factory, "func", factory), getattr(factory, "keywords", {}) or {})


def takes_total_steps(factory: SchedulerFactory) -> bool:
    """Whether the scheduler partial ``factory`` is sized in optimizer steps (OneCycleLR's ``total_steps``)."""
    return "total_steps" in inspect.signature(getattr(factory, "func", factory)).parameters


def check_given_length(total_steps: int, steps: float) -> None:
    """A ``scheduler.total_steps`` given for a run of ``steps`` optimizer steps: fewer fail the run where the
    schedule runs out (torch's "Tried to step ... times"), so they are refused as the fit starts; more leave
    the cycle unfinished, its learning rate never annealed, so they are warned of."""
    if math.isinf(steps) or total_steps == steps:
        return
    if total_steps < steps:
        raise UsageError(
            f"scheduler.total_steps={total_steps} is shorter than the run's {int(steps)} optimizer steps: the "
            f"schedule would run out at step {total_steps + 1} and fail the run. Leave it null (the run's length) "
            f"or give {int(steps)}"
        )
    log.warning(
        "scheduler.total_steps=%d is longer than the run's %d optimizer steps: the run ends at step %d of the "
        "schedule's %d, before its learning rate anneals. Leave it null to fit the schedule to the run",
        total_steps,
        int(steps),
        int(steps),
        total_steps,
    )


def warn_of_epochs_past_the_run(given: Mapping[str, Any], epochs: int) -> None:
    """Warn of a schedule in epochs that the run's ``epochs`` leave unused: a cosine's ``T_max`` given longer
    than the run never anneals, one shorter climbs back after reaching its floor (torch's cosine is periodic),
    and a step schedule whose ``step_size`` is the run's length or more never steps."""
    t_max, step_size = given.get("T_max"), given.get("step_size")
    if isinstance(t_max, int) and t_max != epochs:
        log.warning(
            "scheduler.T_max=%d for a run of %d epochs: %s. Leave it null to fit the cosine to the run",
            t_max,
            epochs,
            f"the run ends at epoch {epochs} of the cosine's {t_max}, before the learning rate anneals"
            if t_max > epochs
            else f"the learning rate reaches its floor at epoch {t_max} and climbs back over the epochs after",
        )
    if isinstance(step_size, int) and step_size >= epochs:
        log.warning(
            "scheduler.step_size=%d for a run of %d epochs: the learning rate never steps. Give a step_size "
            "below %d, or no scheduler",
            step_size,
            epochs,
            epochs,
        )


def build_scheduler(factory: SchedulerFactory, optimizer: torch.optim.Optimizer, trainer: L.Trainer) -> dict:
    """Fill what a scheduler needs from the trainer (total steps, epochs) and pick its update interval (and,
    for one following a validation metric, its frequency: the epochs that validate).

    Schedulers that take ``total_steps`` (OneCycleLR) step per batch; the rest step per epoch. A length the
    trainer does not bound is refused (``validation.check_scheduler_length`` says so before the run).
    """
    filled = factory_fills(factory)
    extra: dict[str, Any] = {}
    interval = "epoch"
    if takes_total_steps(factory):  # its length counts optimizer steps, given or fitted: it steps with them
        interval = "step"
        steps = trainer.estimated_stepping_batches
        if "total_steps" in filled:
            if math.isinf(steps):
                raise ValueError("the scheduler's total_steps cannot be filled in: the trainer has no step limit")
            extra["total_steps"] = int(steps)
        else:
            check_given_length(int(getattr(factory, "keywords", {})["total_steps"]), steps)
    if "T_max" in filled:
        if trainer.max_epochs is None or trainer.max_epochs < 1:
            raise ValueError("the scheduler's T_max cannot be filled in: the trainer has no epoch limit")
        extra["T_max"] = epochs_in_fit(trainer)
    elif {"T_max", "step_size"} & set(given := getattr(factory, "keywords", {}) or {}) and (
        trainer.max_epochs or 0
    ) >= 1:
        warn_of_epochs_past_the_run(given, epochs_in_fit(trainer))
    made = factory(optimizer, **extra)
    if not isinstance(made, dict):
        return {"scheduler": made, "interval": interval}
    # a factory may return Lightning's scheduler config itself (models.plateau: with the metric it follows).
    # A validation metric exists only after the epochs that validate: a scheduler following one steps with them
    # (trainer.check_val_every_n_epoch=2: after epochs 2, 4, ...), where Lightning would fail the fit in epoch 1
    validating_every = trainer.check_val_every_n_epoch
    if after_validation(made.get("monitor", "")) and validating_every:
        # a plateau scheduler steps after the epochs that validate, so its patience counts them
        warn_of_patience_in_validations(
            "scheduler.patience",
            getattr(made["scheduler"], "patience", 0),
            validating_every,
            "the epochs that validate",
            "the learning rate drops",
        )
        return {"interval": interval, "frequency": validating_every, **made}
    return {"interval": interval, **made}


def epochs_in_fit(trainer: L.Trainer) -> int:
    """The epochs a fit bounded by ``trainer.max_epochs`` trains in: fewer when ``trainer.max_steps`` ends it
    first, the epoch it ends within counted. A schedule in epochs (a cosine's ``T_max``) fitted to this ends
    where the run does, not past a ``max_epochs`` the run never reaches.
    """
    epochs = cast(int, trainer.max_epochs)
    if trainer.max_steps in (None, -1):
        return epochs
    steps = trainer.estimated_stepping_batches  # Lightning sets up the training data to count it
    batches = trainer.num_training_batches
    if math.isinf(steps) or math.isinf(batches):
        return epochs
    steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
    return min(epochs, math.ceil(steps / steps_per_epoch))


def refit_cosine(scheduler: Any, t_max: int) -> None:
    """Give a restored ``CosineAnnealingLR`` the length ``t_max`` and set each learning rate to where that
    schedule is at the epochs already done.

    A resume to more (or fewer) epochs restores the schedule with the length it was fitted to, which would
    start the cosine over past its old end; refitted, the rest of the run follows the cosine of its new
    length (what ``reproduce=`` of the resumed run trains from the start). The rate is set from the closed
    form; the scheduler's own steps then go on from it.
    """
    if not isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) or scheduler.T_max == t_max:
        return
    scheduler.T_max = t_max
    progress = (1 + math.cos(math.pi * scheduler.last_epoch / t_max)) / 2
    for group, base_lr in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = scheduler.eta_min + (base_lr - scheduler.eta_min) * progress
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def _compiled_name(key: str) -> str:
    """The name of the weight ``key`` once ``torch.compile`` wrapped the backbone."""
    return f"backbone.{COMPILED}{key.removeprefix('backbone.')}" if key.startswith("backbone.") else key


class TaskModule(L.LightningModule):
    """Shared plumbing: backbone, loss, per-split metrics, optimiser and scheduler from partials.

    Subclasses say how outputs become predictions and which metrics to keep.
    """

    best_metric_name: str = "val/loss_best"
    best_source_name: str = "val/loss"  # the validation value the best-so-far tracker follows

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        loss: nn.Module | None = None,
        channels_last: bool = False,
        compile: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler", "loss"], logger=False)
        initialise(backbone, init)
        self.backbone = backbone
        self.channels_last = channels_last
        self.compile_backbone = compile
        self.loss_fn = loss if loss is not None else self.default_loss()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.train_sums = EpochSums()
        # a NaN loss stays NaN in the mean (no per-step NaN check: that is a host sync per step)
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.val_metrics = MetricCollection(self.make_metrics(), prefix="val/")
        self.test_loss = MeanMetric(nan_strategy="disable")
        self.test_metrics = MetricCollection(self.make_metrics(), prefix="test/")
        self.val_best = self.make_best_tracker()
        self.val_best.persistent(True)  # a resumed run keeps its best-so-far value
        self.test_plot_state = self.make_test_plot_state()
        self.test_plot_data: Any = None
        self._compiled = False

    def metric_names(self) -> set[str]:
        """Every metric name this task logs: ``{train,val,test}/loss``, the evaluation metrics of
        ``make_metrics`` under ``val/`` and ``test/``, the training curve of ``epoch_values`` under
        ``train/``, and the best-so-far value. Sweeps check their objective against it before any trial."""
        evaluation = {str(key) for key in (*self.val_metrics.keys(), *self.test_metrics.keys())}
        # any tensor arithmetic works on ones, so the training curve's names come from the task's own code
        probe: defaultdict[str, Tensor] = defaultdict(lambda: torch.ones(()))
        training = {f"train/{key}" for key in self.epoch_values(probe, torch.tensor(2.0))}
        return {"train/loss", "val/loss", "test/loss", self.best_metric_name, *evaluation, *training}

    # --- what a task defines -------------------------------------------------------------------------
    def default_loss(self) -> nn.Module:
        """The loss used when the config gives none."""
        raise NotImplementedError

    def make_metrics(self) -> dict[str, Metric | MetricCollection]:
        """The metrics of an evaluation split, built once for validation and once for test.

        Returns:
            Metric name (logged as ``val/<name>`` and ``test/<name>``) -> a fresh torchmetrics ``Metric``
            that takes ``to_metric_inputs(outputs)`` and the targets.
        """
        raise NotImplementedError

    def make_best_tracker(self) -> MaxMetric | MinMetric:
        """``MaxMetric`` or ``MinMetric``: the best ``best_source_name`` so far, logged as ``best_metric_name``."""
        raise NotImplementedError

    def make_test_plot_state(self) -> Metric:
        """What the test figures are drawn from; a torchmetrics ``Metric``, so DDP ranks are gathered."""
        raise NotImplementedError

    def to_metric_inputs(self, outputs: Tensor) -> Tensor:
        """Model outputs as the metrics take them (default: unchanged)."""
        return outputs

    def to_predictions(self, outputs: Tensor) -> Tensor:
        """What ``predict`` and the logged model return for a batch of model outputs."""
        return self.to_metric_inputs(outputs)

    def test_figures(self) -> dict[str, Any]:
        """Figures drawn from the test split after ``trainer.test``.

        Returns:
            File name (``confusion_matrix.png``) -> matplotlib figure; empty when there is nothing to draw.
        """
        return {}

    def prepare_target(self, y: Tensor, outputs: Tensor) -> Tensor:
        """Targets in the shape the loss expects (default: unchanged)."""
        return y

    def batch_sums(self, outputs: Tensor, y: Tensor) -> dict[str, Tensor]:
        """What one training batch adds towards the epoch's training curve.

        Args:
            outputs: the batch's model outputs, detached.
            y: the batch's targets.

        Returns:
            Name -> 0-dim tensor summed over the batch (for example ``{"correct": ...}``); the same names
            every batch. Added up on the device over the epoch and all ranks, then given to ``epoch_values``.
        """
        return {}

    def epoch_values(self, sums: Mapping[str, Tensor], samples: Tensor) -> dict[str, Tensor]:
        """The training curve of one epoch, beside ``train/loss``.

        Args:
            sums: the epoch's ``batch_sums``, by name, summed over every step and rank.
            samples: how many samples the epoch trained on (all ranks).

        Returns:
            Metric name (logged as ``train/<name>``) -> value.
        """
        return {}

    # --- Lightning hooks ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        self._check_inputs_fit_the_backbone()
        if self.channels_last:
            # before the strategy wraps the model: DDP lays its gradient buckets out after the parameters'
            # strides, and a later change of layout costs a copy per bucket (and a warning) every step
            self.to(memory_format=torch.channels_last)
        if self.compile_backbone and not self._compiled and stage == "fit":
            self.backbone = cast(nn.Module, torch.compile(self.backbone))
            self._compiled = True

    def _loaded_splits(self) -> list[Any]:
        """The non-empty splits of the trainer's data module, once loaded (explab's ``TensorDataModule``); none
        for another data module."""
        splits = getattr(getattr(self._trainer, "datamodule", None), "splits", None) or {}
        return [split for split in splits.values() if len(split)]

    def _check_inputs_fit_the_backbone(self) -> None:
        """Refuse data whose samples the backbone was not built for, naming the setting: the first batch failed
        in the backbone's first dense layer ("mat1 and mat2 shapes cannot be multiplied (256x3136 and
        256x128)") for a CNN built for other images, and likewise an MLP for another number of features."""
        splits = self._loaded_splits()
        if not splits:
            return
        sample = tuple(splits[0].x.shape[1:])
        shape = getattr(self.backbone, "input_shape", None)
        if shape is not None and tuple(shape) != sample:
            raise UsageError(
                f"the data's samples are {list(sample)}, and the model is built for model.backbone.input_shape="
                f"{list(shape)}: give model.backbone.input_shape={list(sample)}, or a model for this data"
            )
        features = getattr(self.backbone, "in_features", None)
        if features is not None and math.prod(sample) != features:
            raise UsageError(
                f"the data's samples have {math.prod(sample)} features, and the model is built for "
                f"model.backbone.in_features={features}: give model.backbone.in_features={math.prod(sample)}"
            )
        # a token id past the embedding failed TextRNN's first batch ("IndexError: index out of range in self"),
        # and BagOfNgrams, whose rows past its vocabulary hold hashed bigrams, trained on the collisions
        vocabulary = getattr(self.backbone, "vocab_size", None)
        tokens = [split.x for split in splits if not split.x.is_floating_point()]
        highest = max((int(x.max()) for x in tokens if x.numel()), default=-1)
        if vocabulary is not None and highest >= vocabulary:
            raise UsageError(
                f"the data's token ids run to {highest}, and the model's embedding is built for "
                f"model.backbone.vocab_size={vocabulary}: give model.backbone.vocab_size={highest + 1} or more "
                "(the same as data.vocab_size, as the shipped models take it)"
            )

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> tuple[Tensor, Tensor]:
        """Loss and outputs of one batch; the split's running sums or metrics are updated on the device.

        Nothing is logged per step: a ``self.log`` call walks Lightning's result objects, which on small models
        costs as much as the step itself (``bench/overhead.py``). The epoch's values are logged once, at its end.
        """
        x, y = batch
        outputs = self(x)
        loss = self.loss_fn(outputs, self.prepare_target(y, outputs))
        if split == "train":
            self.train_sums.add(loss, len(y), self.batch_sums(outputs.detach(), y))
        else:
            loss_state, metrics = self._evaluation_states(split)
            # one entry per sample weighs the batch by its size (a split's last batch, a DDP rank's shard):
            # with nan_strategy="disable" MeanMetric replaces a weight it is given by 1
            # (Lightning-AI/torchmetrics#3434), which made val/loss and test/loss a mean of batch means
            loss_state.update(loss.detach().expand(len(y)))
            metrics.update(self.to_metric_inputs(outputs.detach()), y)
        return loss, outputs

    def _log_epoch(self, split: str) -> dict[str, Tensor]:
        """Compute (synced over DDP ranks by torchmetrics), log and reset an evaluation split's epoch values."""
        loss_state, metric_state = self._evaluation_states(split)
        loss, metrics = {f"{split}/loss": loss_state.compute()}, metric_state.compute()
        loss_state.reset()
        metric_state.reset()
        # already equal on every rank; sync_dist=True says so (Lightning's mean of equal values changes nothing)
        # instead of drawing its warning, per key, that epoch values should be synced
        self.log_dict(loss, prog_bar=split != "test", sync_dist=True)
        self.log_dict(metrics, sync_dist=True)
        return {**loss, **metrics}

    def _evaluation_states(self, split: str) -> tuple[MeanMetric, MetricCollection]:
        return (self.val_loss, self.val_metrics) if split == "val" else (self.test_loss, self.test_metrics)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")[0]

    def on_train_epoch_end(self) -> None:
        summed = self.train_sums.pop(self.trainer.strategy)
        if summed is None:
            return
        loss, samples, sums = summed
        # summed over the ranks already: sync_dist=True as in _log_epoch
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.log_dict(
            {f"train/{key}": value for key, value in self.epoch_values(sums, samples).items()}, sync_dist=True
        )

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        values = self._log_epoch("val")
        if self.trainer.sanity_checking:  # sanity-check batches never count towards the best-so-far value
            return
        self.val_best.update(values[self.best_source_name])
        self.log(self.best_metric_name, self.val_best.compute(), prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        outputs = self._step(batch, "test")[1]
        self.test_plot_state.update(self.to_metric_inputs(outputs.detach()), batch[1])

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        # every rank takes part in the gather; the figures are drawn later, on rank 0 only
        self.test_plot_data = self.test_plot_state.compute()
        self.test_plot_state.reset()

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self.to_predictions(self(batch[0]))

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": build_scheduler(self.scheduler_factory, optimizer, self.trainer),
        }

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # called before every optimizer step: the parameters are only gathered when there is something to clip
        if gradient_clip_val:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            if has_sparse_gradients(parameters):
                # torch's clipping has no kernel for sparse embedding gradients (model.backbone.sparse=true)
                algorithm = GradClipAlgorithmType(gradient_clip_algorithm or GradClipAlgorithmType.NORM)
                clip_gradients(parameters, float(gradient_clip_val), algorithm.value)
                return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = plain_weights(checkpoint["state_dict"])
        # written mid-epoch, the checkpoint carries the epoch's training sums: the resumed fit logs the
        # epoch's train/ values over all its batches, not over those after the resume
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING and written_mid_epoch(trainer):
            sums = self.train_sums.state(trainer.strategy)
            if sums is not None:
                checkpoint[EPOCH_SUMS_KEY] = sums

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # weights are saved under their plain names (on_save_checkpoint): a backbone torch.compile wrapped in
        # setup, before this hook, loads them under its wrapper's names; a plain one also loads the wrapper's
        # names, which checkpoints of compiled runs written by earlier explab versions hold
        weights = plain_weights(checkpoint["state_dict"])
        if self._compiled:
            weights = {_compiled_name(key): value for key, value in weights.items()}
        checkpoint["state_dict"] = weights
        if (sums := checkpoint.get(EPOCH_SUMS_KEY)) is not None:
            self.train_sums.restore(sums, holder=self._trainer is None or self._trainer.is_global_zero)
        # Lightning restores the optimizer's settings from the checkpoint after this: the ones the config now
        # changes (a resume with optimizer.lr=1e-4) are written into the checkpoint first
        record = checkpoint.get(CHECKPOINT_KEY)
        then = record.get("config", {}).get("optimizer") if isinstance(record, dict) else None
        now = getattr(self.optimizer_factory, "keywords", None)
        if isinstance(then, dict) and now:
            apply_changed_settings(checkpoint, changed_settings(then, now), then)

    def on_train_start(self) -> None:
        self.train_sums.to(self.device)
        # a checkpoint's schedule is restored (after configure_optimizers) with the length it was fitted to
        if (
            self.trainer.max_epochs is not None
            and self.scheduler_factory is not None
            and "T_max" in factory_fills(self.scheduler_factory)
        ):
            epochs = epochs_in_fit(self.trainer)  # the length build_scheduler fits T_max to
            for config in self.trainer.lr_scheduler_configs:
                refit_cosine(config.scheduler, epochs)


class ClassificationTask(TaskModule):
    """Multiclass classification: cross-entropy; accuracy and macro precision, recall and F1 per split."""

    best_metric_name = "val/acc_best"
    best_source_name = "val/acc"

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        loss: nn.Module | None = None,
        channels_last: bool = False,
        compile: bool = False,
        init: str = "default",
    ) -> None:
        self.num_classes = num_classes
        super().__init__(backbone, optimizer, scheduler, loss, channels_last, compile, init)

    def default_loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def make_metrics(self) -> dict[str, Metric | MetricCollection]:
        n = self.num_classes
        return {
            "acc": MulticlassAccuracy(n, average="micro", validate_args=False),
            "precision": MulticlassPrecision(n, average="macro", validate_args=False),
            "recall": MulticlassRecall(n, average="macro", validate_args=False),
            "f1": MulticlassF1Score(n, average="macro", validate_args=False),
        }

    def make_best_tracker(self) -> MaxMetric:
        return MaxMetric()

    def batch_sums(self, outputs: Tensor, y: Tensor) -> dict[str, Tensor]:
        return {"correct": (outputs.argmax(dim=-1) == y).sum()}

    def epoch_values(self, sums: Mapping[str, Tensor], samples: Tensor) -> dict[str, Tensor]:
        return {"acc": sums["correct"] / samples}

    def make_test_plot_state(self) -> Metric:
        return MulticlassConfusionMatrix(self.num_classes, validate_args=False)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self._check_every_label_has_an_output()

    def _check_every_label_has_an_output(self) -> None:
        """Refuse data with a label outside 0 .. ``num_classes`` - 1, once it is loaded: cross-entropy failed on
        the first batch that held one ("IndexError: Target 9 is out of bounds"), naming no setting."""
        labels = [split.y for split in self._loaded_splits() if not split.y.is_floating_point()]
        if not labels:
            return
        lowest, highest = min(int(y.min()) for y in labels), max(int(y.max()) for y in labels)
        if lowest < 0 or highest >= self.num_classes:
            fix = f"give model.num_classes={highest + 1}" if lowest >= 0 else "number the classes from 0"
            raise UsageError(
                f"the data's labels run from {lowest} to {highest}, and model.num_classes={self.num_classes} gives "
                f"the model outputs for 0 to {self.num_classes - 1}: {fix}"
            )

    def test_figures(self) -> dict[str, Any]:
        from explab.tracking.plots import confusion_matrix_figure

        if self.test_plot_data is None:
            return {}
        matrix = self.test_plot_data.cpu().numpy()
        return {"confusion_matrix.png": confusion_matrix_figure(matrix)} if matrix.sum() else {}

    # metrics take the logits as they are (torchmetrics picks the argmax); predictions are probabilities
    def to_predictions(self, outputs: Tensor) -> Tensor:
        return outputs.softmax(dim=-1)


class RegressionTask(TaskModule):
    """Scalar regression: MSE loss; MSE, MAE and R2 per split; best-so-far is the lowest val MSE."""

    best_metric_name = "val/mse_best"
    best_source_name = "val/mse"

    def default_loss(self) -> nn.Module:
        return nn.MSELoss()

    def make_metrics(self) -> dict[str, Metric | MetricCollection]:
        return {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()}

    def make_best_tracker(self) -> MinMetric:
        return MinMetric()

    def batch_sums(self, outputs: Tensor, y: Tensor) -> dict[str, Tensor]:
        predicted, true = self.to_metric_inputs(outputs).float(), y.float()
        return {
            "squared_error": ((predicted - true) ** 2).sum(),
            "target": true.sum(),
            "target_squared": (true * true).sum(),
        }

    def epoch_values(self, sums: Mapping[str, Tensor], samples: Tensor) -> dict[str, Tensor]:
        # train/loss is the MSE already; R2 = 1 - SSE / SST, as torchmetrics' R2Score
        total = sums["target"]
        return {"r2": 1 - sums["squared_error"] / (sums["target_squared"] - total * total / samples)}

    def make_test_plot_state(self) -> Metric:
        return PairsOfValues()

    def test_figures(self) -> dict[str, Any]:
        from explab.tracking.plots import predicted_vs_true_figure

        if self.test_plot_data is None or not len(self.test_plot_data[1]):
            return {}
        predicted, true = self.test_plot_data
        return {"predicted_vs_true.png": predicted_vs_true_figure(predicted.cpu().numpy(), true.cpu().numpy())}

    def to_metric_inputs(self, outputs: Tensor) -> Tensor:
        return outputs.squeeze(-1)

    def prepare_target(self, y: Tensor, outputs: Tensor) -> Tensor:
        return y.view_as(outputs)


class PairsOfValues(Metric):
    """Every (prediction, target) pair of a split, gathered from all DDP ranks."""

    predicted: list[Tensor]
    true: list[Tensor]

    def __init__(self) -> None:
        super().__init__()
        self.add_state("predicted", default=[], dist_reduce_fx="cat")
        self.add_state("true", default=[], dist_reduce_fx="cat")

    def update(self, predicted: Tensor, true: Tensor) -> None:
        self.predicted.append(predicted.float().flatten())
        self.true.append(true.float().flatten())

    def compute(self) -> tuple[Tensor, Tensor]:
        from torchmetrics.utilities import dim_zero_cat

        if isinstance(self.true, list) and not self.true:  # synced over DDP ranks, each state is one tensor
            return torch.zeros(0), torch.zeros(0)
        return dim_zero_cat(self.predicted), dim_zero_cat(self.true)
