"""Where a fit stands in its epoch, read from a real Lightning fit: what a checkpoint written there resumes."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from explab.utils.epoch_progress import batches_trained_in_epoch, written_mid_epoch


class _UnsizedRows(IterableDataset):
    """Four batches of random 8-feature rows, with no length: Lightning learns the epoch's end only when
    the iterator runs out."""

    def __iter__(self):
        generator = torch.Generator().manual_seed(0)
        for _ in range(4 * 8):
            yield torch.randn(8, generator=generator), torch.randint(0, 2, (), generator=generator)


class _Linear(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 2)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _Asked(L.Callback):
    """Notes what the two functions answer where checkpoints are written: after each batch, after the
    epoch's validation."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, int, bool]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.answers.append(("batch", batches_trained_in_epoch(trainer), written_mid_epoch(trainer)))

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.answers.append(("validated", batches_trained_in_epoch(trainer), written_mid_epoch(trainer)))


def test_an_epoch_of_unknown_length_is_over_for_a_checkpoint_from_its_last_batch_on() -> None:
    asked = _Asked()
    trainer = L.Trainer(
        max_epochs=1, callbacks=[asked], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    loader = DataLoader(_UnsizedRows(), batch_size=8)
    trainer.fit(_Linear(), train_dataloaders=loader, val_dataloaders=DataLoader(_UnsizedRows(), batch_size=8))
    assert asked.answers == [
        ("batch", 1, True),
        ("batch", 2, True),
        ("batch", 3, True),
        ("batch", 4, False),
        ("validated", 4, False),
    ]
