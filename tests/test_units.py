"""Small pieces with sharp edges: batching and sharding, param flattening, backbones, schedulers."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from functools import partial
from types import SimpleNamespace

import lightning as L
import optuna
import pytest
import sqlalchemy
import torch
from lightning.pytorch import callbacks as stock
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import nn
from torchmetrics import MeanMetric, R2Score
from torchmetrics.classification import MulticlassAccuracy

from explab.callbacks import EarlyStopping, LastCheckpoint, ModelCheckpoint
from explab.data import DigitsDataModule
from explab.data.tensor_batches import TensorBatches
from explab.models import MLP, ConvNet
from explab.models.tasks import ClassificationTask, RegressionTask, build_scheduler
from explab.sweep import REPEATS_ATTR
from explab.sweep.summary import best_trained_trial
from explab.tracking.params import MAX_VALUE_LENGTH, TRUNCATION_MARK, flatten_params
from explab.tracking.run import run_status_for
from explab.tracking.store import open_client
from explab.utils.signals import interrupts_deferred


def test_eval_shards_are_disjoint_and_cover_the_split() -> None:
    x = torch.arange(103)
    seen = []
    for rank in range(2):
        batches = TensorBatches((x, x), batch_size=10, shuffle=False, rank=rank, world_size=2)
        seen += [int(v) for b in batches for v in b[0]]
    assert sorted(seen) == list(range(103))


def test_train_shards_have_equal_length_and_reshuffle_each_epoch() -> None:
    x = torch.arange(103)
    shards = [TensorBatches((x, x), batch_size=8, shuffle=True, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 7
    first = [torch.cat([b[0] for b in s]) for s in shards]
    assert set(first[0].tolist()) | set(first[1].tolist()) == set(range(103))
    again = torch.cat([b[0] for b in shards[0]])
    assert not torch.equal(first[0], again), "a new permutation every epoch"


def test_same_seed_same_batches() -> None:
    x = torch.randn(50, 3)
    a = [b[0] for b in TensorBatches((x,), batch_size=7, shuffle=True, seed=1)]
    b = [b[0] for b in TensorBatches((x,), batch_size=7, shuffle=True, seed=1)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


class _BatchSizesSeen(L.LightningModule):
    """A linear classifier on flattened digits that notes (sanity checking?, batch size) of each validation step."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(64, 10)
        self.seen: list[tuple[bool, int]] = []

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx) -> None:
        self.seen.append((self.trainer.sanity_checking, len(batch[0])))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(("sanity_steps", "sanity_sizes"), [(2, [16, 16]), (-1, [200, 70])])
def test_sanity_check_validates_training_sized_batches_unless_asked_for_the_whole_split(sanity_steps, sanity_sizes):
    data = DigitsDataModule(flatten=True, batch_size=16, eval_batch_size=200, val_fraction=0.15)
    model = _BatchSizesSeen()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        num_sanity_val_steps=sanity_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    assert [size for sanity, size in model.seen if sanity] == sanity_sizes
    assert [size for sanity, size in model.seen if not sanity] == [200, 70]  # the whole split (270), full batches


def test_flatten_params_truncates_long_values_and_skips_hydra() -> None:
    params = flatten_params({"a": {"b": 1, "c": [1, 2]}, "long": "x" * 10_000, "hydra": {"run": 1}})
    assert params["a.b"] == "1" and params["a.c"] == "[1, 2]"
    assert len(params["long"]) == MAX_VALUE_LENGTH and params["long"].endswith(TRUNCATION_MARK)
    assert not any(k.startswith("hydra") for k in params)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_convnet_depth_is_configurable(depth: int) -> None:
    net = ConvNet([1, 8, 8], 10, channels=[16, 32], pool=[True, True], depth=depth, hidden=[32])
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == depth
    assert net(torch.zeros(4, 1, 8, 8)).shape == (4, 10)


def test_convnet_refuses_a_depth_that_shrinks_the_image_away() -> None:
    with pytest.raises(ValueError, match="shrinks an input"):
        ConvNet([1, 8, 8], 10, channels=[8] * 5, pool=True, padding=0)


def test_mlp_depth() -> None:
    net = MLP(64, 10, depth=3, width=16)
    assert sum(isinstance(m, torch.nn.Linear) for m in net.modules()) == 4


def test_schedulers_get_their_length_from_the_trainer() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=0.1)
    trainer = SimpleNamespace(estimated_stepping_batches=40, max_epochs=4)
    onecycle = build_scheduler(partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1), optimizer, trainer)
    assert onecycle["interval"] == "step" and onecycle["scheduler"].total_steps == 40
    cosine = build_scheduler(partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=None), optimizer, trainer)
    assert cosine["interval"] == "epoch" and cosine["scheduler"].T_max == 4


def test_run_status_mapping() -> None:
    assert run_status_for(None) == "FINISHED"
    assert run_status_for(KeyboardInterrupt()) == "KILLED"
    assert run_status_for(SystemExit(1)) == "KILLED"
    assert run_status_for(ValueError()) == "FAILED"


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_training_sums_give_what_torchmetrics_gives(kind: str) -> None:
    """train/loss, train/acc and train/r2 come from sums added up on the device, not from torchmetrics."""
    torch.manual_seed(0)
    sgd = partial(torch.optim.SGD, lr=0.1)
    if kind == "classification":
        task = ClassificationTask(nn.Identity(), num_classes=5, optimizer=sgd)
        batches = [(torch.randn(n, 5), torch.randint(0, 5, (n,))) for n in (7, 16, 3)]
        reference = {"acc": MulticlassAccuracy(5, average="micro")}
    else:
        task = RegressionTask(nn.Identity(), optimizer=sgd)
        batches = [(torch.randn(n, 1), torch.randn(n) + 3.0) for n in (7, 16, 3)]
        reference = {"r2": R2Score()}
    mean_loss = MeanMetric()
    for outputs, y in batches:
        loss = task.loss_fn(outputs, task.prepare_target(y, outputs))
        task.train_sums.add(loss, len(y), task.batch_sums(outputs, y))
        mean_loss.update(loss, weight=len(y))
        for metric in reference.values():
            metric.update(task.to_metric_inputs(outputs), y)
    strategy = SingleDeviceStrategy(torch.device("cpu"))
    loss, samples, sums = task.train_sums.pop(strategy)
    assert samples.item() == 26
    assert loss.item() == pytest.approx(mean_loss.compute().item(), rel=1e-6)
    values = task.epoch_values(sums, samples)
    assert set(values) == set(task.train_metric_keys) == set(reference)
    for key, value in values.items():
        assert value.item() == pytest.approx(reference[key].compute().item(), rel=1e-5), key
    assert task.train_sums.pop(strategy) is None, "emptied for the next epoch"


def test_store_connections_use_wal_and_commit_without_waiting_for_the_disk(tmp_path) -> None:
    client = open_client(f"sqlite:///{tmp_path}/mlflow.db")
    client.create_experiment("any")
    with client._tracking_client.store.engine.connect() as connection:  # MLflow's own pooled connection
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1, "NORMAL"
    with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",), "kept in the file"
    other = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/other.db")
    with other.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2, "other files keep FULL"
    other.dispose()


def test_ctrl_c_inside_a_deferred_block_is_raised_after_the_block() -> None:
    finished = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        finished.append("rest of the block")
    assert finished == ["rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupts_deferred():  # no signal: nothing raised
        pass


class _RecordedLastCheckpoint(LastCheckpoint):
    """LastCheckpoint that notes the epoch of every write."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.written: list[int] = []

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        self.written.append(trainer.current_epoch)
        super()._save_checkpoint(trainer, filepath)


@pytest.mark.parametrize(
    ("interval", "stop_at", "written"),
    [(0, None, [0, 1, 2, 3]), (3600, None, [3]), (3600, 1, [1])],
    ids=["every-epoch", "final-epoch-only", "early-stop-is-final"],
)
def test_last_checkpoint_is_written_by_interval_and_after_the_final_epoch(tmp_path, interval, stop_at, written):
    class Stop(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if trainer.current_epoch == stop_at:
                trainer.should_stop = True

    last = _RecordedLastCheckpoint(dirpath=tmp_path, filename="last", min_interval_seconds=interval)
    trainer = L.Trainer(
        max_epochs=4,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[Stop(), last],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(BoringModel())
    assert last.written == written
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == written[-1]


def test_explab_checkpoint_and_early_stopping_keep_lightnings_state_keys():
    """Checkpoints written with Lightning's own classes must resume into explab's: same keys, same state."""
    settings = {"monitor": "val/acc", "mode": "max"}
    assert ModelCheckpoint(**settings).state_key == stock.ModelCheckpoint(**settings).state_key
    assert EarlyStopping(**settings).state_key == stock.EarlyStopping(**settings).state_key
    assert ModelCheckpoint(every_n_train_steps=3).state_key == stock.ModelCheckpoint(every_n_train_steps=3).state_key


@pytest.mark.parametrize(("every_n_train_steps", "saved"), [(None, ["step=4"]), (2, ["step=2", "step=4"])])
def test_model_checkpoint_still_saves_by_steps_when_asked(tmp_path, every_n_train_steps, saved):
    """The per-step hook is skipped only when nothing could be saved from it (saving at epoch ends only)."""
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path, filename="{step}", save_top_k=-1, every_n_train_steps=every_n_train_steps
    )
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=1,
        callbacks=[checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(BoringModel())
    assert sorted(p.stem for p in tmp_path.glob("*.ckpt")) == saved


def test_the_best_trial_named_is_one_that_ran_when_a_repeat_ties_with_it() -> None:
    """Storages break ties by order; a repeat (told its twin's value, nothing trained) must not be named."""
    study = optuna.create_study(direction="minimize")
    distributions = {"x": optuna.distributions.CategoricalDistribution([1.0, 2.0])}

    def add(value: float, x: float, **attrs: int) -> None:
        trial = optuna.trial.create_trial(params={"x": x}, distributions=distributions, value=value, user_attrs=attrs)
        study.add_trial(trial)

    add(0.0, 2.0, **{REPEATS_ATTR: 1})  # first of the tied trials: what study.best_trial returns here
    add(0.0, 2.0)
    add(1.0, 1.0)
    assert study.best_trial.number == 0
    assert best_trained_trial(study).number == 1
