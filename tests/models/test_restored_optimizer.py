"""A checkpoint's optimizer state given the settings a resume changes, with torch's own optimizers and schedulers:
restored and stepped on, the rates are the ones a run with the new settings from the start would be at."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch

from explab.models.restored_optimizer import apply_changed_settings, changed_settings

STEPS_DONE = 7
SCHEDULES: dict[str, Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]] = {
    "none": partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=lambda step: 1.0),
    "step": partial(torch.optim.lr_scheduler.StepLR, step_size=3, gamma=0.5),
    "cosine with a floor": partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=12, eta_min=1e-4),
    "one-cycle": partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=None, total_steps=12),  # max_lr: the lr
}


def _trained(lr: float, schedule: str, weight_decay: float = 0.0):
    weights = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weights], lr=lr, weight_decay=weight_decay)
    factory = SCHEDULES[schedule]
    if schedule == "one-cycle":
        factory = partial(factory, max_lr=lr)
    scheduler = factory(optimizer)
    return weights, optimizer, scheduler


def _steps(weights, optimizer, scheduler, n: int) -> list[float]:
    rates = []
    for _ in range(n):
        optimizer.zero_grad()
        (weights**2).sum().backward()
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_a_new_learning_rate_carries_the_schedule_as_if_the_run_had_started_with_it(schedule: str) -> None:
    weights, optimizer, scheduler = _trained(0.003, schedule)
    _steps(weights, optimizer, scheduler, STEPS_DONE)
    checkpoint = {"optimizer_states": [optimizer.state_dict()], "lr_schedulers": [scheduler.state_dict()]}
    moments = checkpoint["optimizer_states"][0]["state"][0]["exp_avg"].clone()

    then = {"lr": 0.003, "weight_decay": 0.0}
    apply_changed_settings(checkpoint, changed_settings(then, {"lr": 0.01, "weight_decay": 0.05}), then)

    # what Lightning does on resume: the config's new optimizer and scheduler, then the checkpoint's states
    resumed = _trained(0.01, schedule, weight_decay=0.05)
    resumed[1].load_state_dict(checkpoint["optimizer_states"][0])
    resumed[2].load_state_dict(checkpoint["lr_schedulers"][0])
    assert torch.equal(resumed[1].state[resumed[0]]["exp_avg"], moments), "the moments are the checkpoint's"
    assert resumed[1].param_groups[0]["weight_decay"] == 0.05

    from_the_start = _trained(0.01, schedule, weight_decay=0.05)
    _steps(*from_the_start, STEPS_DONE)
    assert resumed[1].param_groups[0]["lr"] == pytest.approx(from_the_start[1].param_groups[0]["lr"])
    assert _steps(*resumed, 4) == pytest.approx(_steps(*from_the_start, 4))


def test_only_settings_the_config_changed_are_written() -> None:
    then = {"_target_": "torch.optim.Adam", "lr": 0.003, "betas": [0.9, 0.999], "weight_decay": 0.0}
    assert changed_settings(then, {"lr": 0.003, "betas": (0.9, 0.999), "weight_decay": 0.0}) == {}
    # a key the checkpoint's config did not have is the optimizer's default: not known to have changed
    assert changed_settings(then, {"lr": 0.003, "betas": [0.95, 0.999], "eps": 1e-6}) == {"betas": [0.95, 0.999]}
