"""Batches cut from in-memory tensors: DDP shards, shuffling, and the sanity check's batch size."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import Tensor, nn

from explab.data import DigitsDataModule
from explab.data.tensor_batches import TensorBatches


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


@pytest.mark.parametrize(
    ("samples", "size", "world", "drop_last"),
    [(103, 8, 2, False), (103, 8, 1, False), (97, 8, 2, False), (96, 8, 1, False), (5, 8, 1, False), (103, 8, 1, True)],
)
def test_the_last_batch_size_is_that_of_the_last_batch_a_pass_yields(samples, size, world, drop_last) -> None:
    x = torch.arange(samples)
    batches = TensorBatches((x,), batch_size=size, shuffle=True, world_size=world, drop_last=drop_last)
    assert batches.last_batch_size() == len(list(batches)[-1][0])


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


def test_a_pass_resumed_after_some_samples_yields_the_rest_of_that_epochs_permutation() -> None:
    x = torch.arange(103)
    full = TensorBatches((x,), batch_size=8, shuffle=True, seed=3, epoch=4)
    whole = [b[0] for b in full]
    rest = [b[0] for b in TensorBatches((x,), batch_size=8, shuffle=True, seed=3, epoch=4, skip_samples=40)]
    assert torch.equal(torch.cat(rest), torch.cat(whole[5:]))
    assert full.pass_epoch == 4 and full.epoch == 5


@pytest.mark.parametrize(("before", "after"), [(1, 2), (2, 1), (2, 3)])
def test_a_pass_resumed_on_another_number_of_ranks_trains_the_samples_it_had_left(before: int, after: int) -> None:
    """Stopped after 3 batches on each of ``before`` ranks, resumed on ``after``: the rest of the epoch's
    permutation, every sample the stopped ranks never reached, evenly over the new ranks."""
    x, batch_size, batches = torch.arange(103), 8, 3

    def pass_of(rank: int, world_size: int, skip_samples: int = 0) -> list[Tensor]:
        return [b[0] for b in TensorBatches(
            (x,), batch_size, shuffle=True, seed=3, rank=rank, world_size=world_size, epoch=4,
            skip_samples=skip_samples,
        )]  # fmt: skip

    trained = [batch for rank in range(before) for batch in pass_of(rank, before)[:batches]]
    rest = [pass_of(rank, after, skip_samples=batches * batch_size * before) for rank in range(after)]
    assert len({len(shard) for shard in rest}) == 1, "every rank runs the same number of steps"
    resumed = torch.cat([batch for shard in rest for batch in shard]).tolist()
    left = set(range(103)) - set(torch.cat(trained).tolist())
    assert left <= set(resumed) and len(left) + after > len(resumed), "the rest, padded only to even the shards"


def test_a_checkpoint_that_counted_one_ranks_samples_resumes_after_them() -> None:
    """Earlier checkpoints hold ``skip_samples``, the samples of the one rank that wrote them."""
    epoch_1, resumed = DigitsDataModule(batch_size=64, seed=5), DigitsDataModule(batch_size=64, seed=5)
    epoch_1.load_state_dict({"epoch": 1, "samples_trained": 0})
    resumed.load_state_dict({"epoch": 1, "skip_samples": 2 * 64})
    whole, rest = ([y for _, y in data.train_dataloader()] for data in (epoch_1, resumed))
    assert len(rest) == len(whole) - 2 and all(torch.equal(a, b) for a, b in zip(rest, whole[2:], strict=True))


class _TrainedOn(L.LightningModule):
    """A linear classifier on flattened digits that notes the targets of every training batch, by epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(64, 10)
        self.seen: list[tuple[int, list[int]]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((self.current_epoch, batch[1].tolist()))
        return nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _Stopped(Exception):
    pass


class _SaveAndStop(L.Callback):
    """Writes a checkpoint to ``path`` after batch ``batch`` of epoch ``epoch`` (None: at the epoch's end),
    then stops the fit as a killed job would."""

    def __init__(self, path, epoch: int, batch: int | None) -> None:
        self.path, self.epoch, self.batch = path, epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            trainer.save_checkpoint(self.path)
            raise _Stopped

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.batch is None and trainer.current_epoch == self.epoch:
            trainer.save_checkpoint(self.path)
            raise _Stopped


@pytest.mark.parametrize("batch", [6, None], ids=["mid-epoch", "epoch-end"])
def test_a_fit_resumed_from_a_checkpoint_trains_the_batches_an_uninterrupted_fit_would(tmp_path, batch) -> None:
    def fit(model, *callbacks, ckpt_path=None) -> None:
        trainer = L.Trainer(
            max_epochs=3, num_sanity_val_steps=0, limit_val_batches=0, callbacks=list(callbacks), logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(model, datamodule=DigitsDataModule(flatten=True, batch_size=64, seed=5), ckpt_path=ckpt_path)

    uninterrupted = _TrainedOn()
    fit(uninterrupted)
    stopped = _TrainedOn()
    with pytest.raises(_Stopped):
        fit(stopped, _SaveAndStop(tmp_path / "stop.ckpt", epoch=1, batch=batch))
    resumed = _TrainedOn()
    fit(resumed, ckpt_path=tmp_path / "stop.ckpt")
    assert stopped.seen + resumed.seen == uninterrupted.seen
