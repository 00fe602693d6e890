"""explab's ModelCheckpoint and EarlyStopping: Lightning's, with what they count said where it is not epochs."""

from __future__ import annotations

import logging

import pytest

from explab.train import train


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        (("+trainer.val_check_interval=0.5",), "validates every 0.5 epochs: it stops a run after 1.5 epochs"),
        (("trainer.check_val_every_n_epoch=2",), "validates every 2 epochs: it stops a run after 6 epochs"),
        ((), None),
    ],
)
def test_a_patience_that_counts_other_than_epochs_is_warned_of(compose_cfg, caplog, overrides, said) -> None:
    """Early stopping's patience counts validations: with two an epoch a patience of 3 stopped a run after 1.5
    epochs without improvement, where the config read as 3 epochs."""
    cfg = compose_cfg("logger=none", "trainer.max_epochs=2", "callbacks.early_stopping.patience=3", *overrides)
    with caplog.at_level(logging.WARNING, logger="explab.callbacks.stock"):
        train(cfg)
    if said is None:
        assert "counts validations" not in caplog.text
        return
    assert f"callbacks.early_stopping.patience=3 counts validations, not epochs, and this fit {said}" in caplog.text
