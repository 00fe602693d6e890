"""Task modules: the training logic around any backbone (loss, metrics, optimisation), one per task kind."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanAbsoluteError, MeanSquaredError, MetricCollection, MinMetric, R2Score
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def build_scheduler(factory: SchedulerFactory, optimizer: torch.optim.Optimizer, trainer: L.Trainer) -> dict:
    """Fill what a scheduler needs from the trainer (total steps, epochs) and pick its update interval.

    Schedulers that take ``total_steps`` (OneCycleLR) step per batch; the rest step per epoch.
    """
    func = getattr(factory, "func", factory)
    given = getattr(factory, "keywords", {}) or {}
    params = inspect.signature(func).parameters
    extra: dict[str, Any] = {}
    interval = "epoch"
    if "total_steps" in params and given.get("total_steps") is None:
        extra["total_steps"] = int(trainer.estimated_stepping_batches)
        interval = "step"
    if "T_max" in params and given.get("T_max") is None:
        extra["T_max"] = max(1, int(trainer.max_epochs or 1))
    return {"scheduler": factory(optimizer, **extra), "interval": interval}


class TaskModule(L.LightningModule):
    """Shared plumbing: backbone, loss, per-split metrics, optimiser and scheduler from partials.

    Subclasses say how outputs become predictions and which metrics to keep.
    """

    best_metric_name: str = "val/loss_best"
    metric_keys: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("train", "val", "test")

    @classmethod
    def metric_names(cls) -> set[str]:
        """Every metric name this task logs, known before anything is built (sweeps check against it)."""
        names = {f"{split}/{key}" for split in cls.splits for key in ("loss", *cls.metric_keys)}
        return names | {cls.best_metric_name}

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        loss: nn.Module | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler", "loss"], logger=False)
        self.backbone = backbone
        self.loss_fn = loss if loss is not None else self.default_loss()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.train_metrics = self.make_metrics("train/")
        self.val_metrics = self.make_metrics("val/")
        self.test_metrics = self.make_metrics("test/")
        self.val_best = self.make_best_tracker()
        self.val_best.persistent(True)  # a resumed run keeps its best-so-far value
        self._compiled = False

    # --- what a task defines -------------------------------------------------------------------------
    def default_loss(self) -> nn.Module:
        raise NotImplementedError

    def make_metrics(self, prefix: str) -> MetricCollection:
        raise NotImplementedError

    def make_best_tracker(self) -> MaxMetric | MinMetric:
        raise NotImplementedError

    def best_source(self) -> Tensor:
        """The validation value the best-so-far tracker follows."""
        raise NotImplementedError

    def to_metric_inputs(self, outputs: Tensor) -> Tensor:
        return outputs

    def prepare_target(self, y: Tensor, outputs: Tensor) -> Tensor:
        return y

    # --- Lightning hooks ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.hparams.compile and not self._compiled and stage == "fit":
            self.backbone = torch.compile(self.backbone)
            self._compiled = True

    def on_fit_start(self) -> None:
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        if self.hparams.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def _step(self, batch: tuple[Tensor, Tensor], metrics: MetricCollection, split: str) -> Tensor:
        x, y = batch
        outputs = self(x)
        loss = self.loss_fn(outputs, self.prepare_target(y, outputs))
        metrics.update(self.to_metric_inputs(outputs.detach()), y)
        self.log(
            f"{split}/loss",
            loss.detach(),
            on_step=False,
            on_epoch=True,
            prog_bar=split != "test",
            sync_dist=split != "train",
            batch_size=len(y),
        )
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, self.train_metrics, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # sanity-check batches never count towards the best-so-far value
            return
        self.val_best.update(self.best_source())
        self.log(self.best_metric_name, self.val_best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, self.test_metrics, "test")

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self.to_metric_inputs(self(batch[0]))

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": build_scheduler(self.scheduler_factory, optimizer, self.trainer),
        }


class ClassificationTask(TaskModule):
    """Multiclass classification: cross-entropy; accuracy and macro precision, recall and F1 per split."""

    best_metric_name = "val/acc_best"
    metric_keys = ("acc", "precision", "recall", "f1")

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        loss: nn.Module | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        self.num_classes = num_classes
        super().__init__(backbone, optimizer, scheduler, loss, channels_last, compile)

    def default_loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def make_metrics(self, prefix: str) -> MetricCollection:
        n = self.num_classes
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(n, average="micro"),
                "precision": MulticlassPrecision(n, average="macro"),
                "recall": MulticlassRecall(n, average="macro"),
                "f1": MulticlassF1Score(n, average="macro"),
            },
            prefix=prefix,
        )

    def make_best_tracker(self) -> MaxMetric:
        return MaxMetric()

    def best_source(self) -> Tensor:
        return self.val_metrics["acc"].compute()

    def to_metric_inputs(self, outputs: Tensor) -> Tensor:
        return outputs.softmax(dim=-1)


class RegressionTask(TaskModule):
    """Scalar regression: MSE loss; MSE, MAE and R2 per split; best-so-far is the lowest val MSE."""

    best_metric_name = "val/mse_best"
    metric_keys = ("mse", "mae", "r2")

    def default_loss(self) -> nn.Module:
        return nn.MSELoss()

    def make_metrics(self, prefix: str) -> MetricCollection:
        return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()}, prefix=prefix)

    def make_best_tracker(self) -> MinMetric:
        return MinMetric()

    def best_source(self) -> Tensor:
        return self.val_metrics["mse"].compute()

    def to_metric_inputs(self, outputs: Tensor) -> Tensor:
        return outputs.squeeze(-1)

    def prepare_target(self, y: Tensor, outputs: Tensor) -> Tensor:
        return y.view_as(outputs)
