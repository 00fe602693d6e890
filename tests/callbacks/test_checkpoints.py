"""explab's checkpoint callbacks: when last.ckpt is written, and Lightning's state keys kept."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch import callbacks as stock
from lightning.pytorch.demos.boring_classes import BoringModel

from explab.callbacks import EarlyStopping, LastCheckpoint, ModelCheckpoint


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
