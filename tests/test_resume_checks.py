"""What a resume, or a fit from a checkpoint, may change of the state the checkpoint holds."""

from __future__ import annotations

from explab.resume_checks import restored_state_changes


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
