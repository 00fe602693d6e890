"""What a resume, or a fit from a checkpoint, may change of the state the checkpoint holds."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from explab.errors import UsageError
from explab.resume_checks import _check_something_left_to_train, restored_state_changes


def test_a_change_the_restored_state_cannot_take_is_named() -> None:
    then = {
        "optimizer._target_": "torch.optim.Adam",
        "optimizer.lr": 0.003,
        "scheduler._target_": "torch.optim.lr_scheduler.OneCycleLR",
        "scheduler.max_lr": 0.003,
        "scheduler.pct_start": 0.25,
    }
    # a new lr, and the one-cycle peak that follows it: written into the restored state
    assert restored_state_changes(then, {**then, "optimizer.lr": 0.01, "scheduler.max_lr": 0.01}) == ""
    # a schedule setting is baked into the saved schedule, and a class holds other state
    assert (
        restored_state_changes(then, {**then, "scheduler.pct_start": 0.3}) == "scheduler.pct_start: 0.25 then, 0.3 now"
    )
    assert restored_state_changes(then, {**then, "scheduler.max_lr": 0.01}) == "scheduler.max_lr: 0.003 then, 0.01 now"
    sgd_without_schedule = {"optimizer._target_": "torch.optim.SGD", "optimizer.lr": 0.003}
    assert restored_state_changes(then, sgd_without_schedule) == (
        "optimizer: Adam then, SGD now; scheduler: OneCycleLR then, none now"
    )


def test_weights_that_do_not_fit_are_named_by_key_and_shape() -> None:
    from torch import nn

    from explab.checkpoints import weights_mismatch

    with torch.device("meta"):  # as the check builds the model
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert weights_mismatch(model, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).state_dict()) == ""
    wider = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2), nn.Linear(2, 2)).state_dict()
    assert weights_mismatch(model, wider) == (
        "the model lacks 3.bias, 3.weight; shapes differ: 0.bias [16] in the checkpoint, [8] in the model, "
        "0.weight [16, 4] in the checkpoint, [8, 4] in the model, "
        "2.weight [2, 16] in the checkpoint, [2, 8] in the model"
    )
    # saved from a run whose backbone torch.compile wrapped: the same weights under backbone._orig_mod
    task = nn.Module()
    task.backbone = model
    compiled = {f"backbone._orig_mod.{key.removeprefix('backbone.')}": v for key, v in task.state_dict().items()}
    assert weights_mismatch(task, compiled) == ""


def test_a_finished_run_with_nothing_left_to_train_says_how_far_it_trained() -> None:
    one_epoch = {"epoch": 0, "global_step": 1}
    refused = r"already trained 1 epoch \(trainer.max_epochs=1\): nothing is left to train. Give trainer.max_epochs=2"
    with pytest.raises(UsageError, match=refused):
        _check_something_left_to_train("run", one_epoch, OmegaConf.create({"trainer": {"max_epochs": 1}}))
    with pytest.raises(UsageError, match=r"already trained 1 step \(trainer.max_steps=1\)"):
        _check_something_left_to_train("run", one_epoch, OmegaConf.create({"trainer": {"max_steps": 1}}))
    _check_something_left_to_train("run", one_epoch, OmegaConf.create({"trainer": {"max_epochs": 2}}))


def test_a_finished_run_early_stopping_ended_resumes_only_with_more_patience() -> None:
    stopped = {"epoch": 4, "callbacks": {"EarlyStopping{'monitor': 'val/acc', 'mode': 'max'}": {"wait_count": 1}}}

    def config(patience: int):
        return OmegaConf.create(
            {"trainer": {"max_epochs": 20}, "callbacks": {"early_stopping": {"patience": patience}}}
        )

    refused = r"early stopping ended it after 1 epoch without improvement \(callbacks.early_stopping.patience=1\)"
    with pytest.raises(UsageError, match=refused):
        _check_something_left_to_train("run", stopped, config(1))
    _check_something_left_to_train("run", stopped, config(2))
