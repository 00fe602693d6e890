"""Task modules: scheduler lengths from the trainer, and the on-device training curve."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import nn
from torchmetrics import MeanMetric, R2Score
from torchmetrics.classification import MulticlassAccuracy

from explab.checkpoints import plain_weights
from explab.errors import UsageError
from explab.models.plateau import reduce_lr_on_plateau
from explab.models.tasks import ClassificationTask, RegressionTask, build_scheduler


def test_schedulers_get_their_length_from_the_trainer() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=0.1)
    trainer = SimpleNamespace(estimated_stepping_batches=40, max_epochs=4, max_steps=-1, num_training_batches=10)
    onecycle = build_scheduler(partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1), optimizer, trainer)
    assert onecycle["interval"] == "step" and onecycle["scheduler"].total_steps == 40
    cosine = build_scheduler(partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=None), optimizer, trainer)
    assert cosine["interval"] == "epoch" and cosine["scheduler"].T_max == 4


@pytest.mark.parametrize("given", [40, 100_000, 10])
def test_a_one_cycle_of_given_length_steps_with_the_optimizer_and_fits_the_run(caplog, given: int) -> None:
    """``scheduler.total_steps`` given rather than fitted made the one-cycle step once an epoch: 40 steps of
    training went two steps into a cycle of 40, and one of 100,000 kept the learning rate at its start (digits:
    test/acc 0.74 against 0.95). Given shorter than the run, torch failed it where the cycle ran out."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    trainer = SimpleNamespace(estimated_stepping_batches=40, max_epochs=2, max_steps=-1, num_training_batches=20)
    factory = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=given)
    if given < 40:
        with pytest.raises(UsageError, match=r"^scheduler.total_steps=10 is shorter than the run's 40 optimizer steps"):
            build_scheduler(factory, optimizer, trainer)
        return
    made = build_scheduler(factory, optimizer, trainer)
    assert made["interval"] == "step" and made["scheduler"].total_steps == given
    longer = "scheduler.total_steps=100000 is longer than the run's 40 optimizer steps: the run ends at step 40"
    assert (longer in caplog.text) == (given > 40)


@pytest.mark.parametrize(
    ("scheduler", "said"),
    [
        ((torch.optim.lr_scheduler.CosineAnnealingLR, {"T_max": 100}), "the run ends at epoch 4 of the cosine's 100"),
        ((torch.optim.lr_scheduler.CosineAnnealingLR, {"T_max": 2}), "reaches its floor at epoch 2 and climbs back"),
        ((torch.optim.lr_scheduler.StepLR, {"step_size": 4}), "step_size=4 for a run of 4 epochs: the learning rate"),
        ((torch.optim.lr_scheduler.CosineAnnealingLR, {"T_max": 4}), None),
        ((torch.optim.lr_scheduler.CosineAnnealingLR, {"T_max": None}), None),
        ((torch.optim.lr_scheduler.StepLR, {"step_size": 3}), None),
    ],
)
def test_a_schedule_in_epochs_given_another_length_than_the_run_is_warned_of(caplog, scheduler, said) -> None:
    """``scheduler.step_size=5`` in a run of 2 epochs never stepped, and a cosine's ``T_max`` given longer than
    the run never annealed (shorter, it climbed back), without a word."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    trainer = SimpleNamespace(estimated_stepping_batches=40, max_epochs=4, max_steps=-1, num_training_batches=10)
    build_scheduler(partial(scheduler[0], **scheduler[1]), optimizer, trainer)
    if said is None:
        assert "scheduler." not in caplog.text, caplog.text
    else:
        assert said in caplog.text, caplog.text


@pytest.mark.parametrize(
    ("monitor", "mode", "frequency"), [("val/acc", "max", 3), ("val/loss", "min", 3), ("train/loss", "min", 1)]
)
def test_a_plateau_scheduler_is_handed_to_lightning_with_the_metric_it_follows(
    monitor: str, mode: str, frequency: int
) -> None:
    """Lightning refuses a ReduceLROnPlateau whose config names no metric; auto takes the metric's way. One
    following a validation metric steps after the epochs that validate (every third here)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    made = build_scheduler(
        partial(reduce_lr_on_plateau, monitor=monitor, mode="auto", patience=2),
        optimizer,
        SimpleNamespace(check_val_every_n_epoch=3),
    )
    assert made["monitor"] == monitor and made["interval"] == "epoch"
    assert made.get("frequency", 1) == frequency
    assert isinstance(made["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (made["scheduler"].mode, made["scheduler"].patience) == (mode, 2)


@pytest.mark.parametrize(("validating_every", "warned"), [(1, False), (2, True)])
def test_a_plateau_schedulers_patience_in_validations_is_said_in_epochs(
    caplog, validating_every: int, warned: bool
) -> None:
    """Stepped after the epochs that validate, a patience of 5 waited 10 epochs of a fit validating every other
    one, where the config reads as 5."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    build_scheduler(
        partial(reduce_lr_on_plateau, monitor="val/acc", mode="auto", patience=5),
        optimizer,
        SimpleNamespace(check_val_every_n_epoch=validating_every),
    )
    said = (
        "scheduler.patience=5 counts the epochs that validate, and this fit validates every 2 epochs: the learning "
        "rate drops after 10 epochs without improvement. For 5 epochs give scheduler.patience=2"
    )
    assert (said in caplog.text) == warned, caplog.text


@pytest.mark.parametrize(
    ("scheduler", "trainer"),
    [
        (partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1), {"estimated_stepping_batches": float("inf")}),
        (partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=None), {"max_epochs": -1}),
    ],
)
def test_a_scheduler_length_the_trainer_does_not_bound_is_refused(scheduler, trainer: dict) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="cannot be filled in: the trainer has no"):
        build_scheduler(scheduler, optimizer, SimpleNamespace(**trainer))


@pytest.mark.parametrize("split", ["val", "test"])
def test_an_evaluation_loss_is_the_loss_over_the_whole_split(split: str) -> None:
    """Batches of unequal size (a split's last batch, a DDP rank's shard) count by their samples."""
    torch.manual_seed(0)
    task = ClassificationTask(nn.Identity(), num_classes=5, optimizer=partial(torch.optim.SGD, lr=0.1))
    batches = [(torch.randn(n, 5), torch.randint(0, 5, (n,))) for n in (16, 3)]
    for batch in batches:
        task._step(batch, split)
    loss = (task.val_loss if split == "val" else task.test_loss).compute()
    whole = nn.functional.cross_entropy(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))
    assert loss.item() == pytest.approx(whole.item(), rel=1e-6)


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
    curve = {name for name in task.metric_names() if name.startswith("train/")}
    assert curve == {"train/loss", *(f"train/{key}" for key in values)}
    assert set(values) == set(reference)
    for key, value in values.items():
        assert value.item() == pytest.approx(reference[key].compute().item(), rel=1e-5), key
    assert task.train_sums.pop(strategy) is None, "emptied for the next epoch"


def test_weights_load_whether_or_not_the_saving_or_the_loading_backbone_was_compiled() -> None:
    """torch.compile wraps the backbone in ``setup`` and its weights read ``backbone._orig_mod.x``: a compiled
    run's checkpoint failed ``explab-eval`` and a resume with ``model.compile=false`` (strict loading)."""

    def task(compile: bool) -> ClassificationTask:
        module = ClassificationTask(
            nn.Sequential(nn.Linear(4, 3)), 3, partial(torch.optim.SGD, lr=0.1), compile=compile
        )
        module.setup("fit")  # where the backbone is wrapped; compiling itself waits for the first forward pass
        return module

    compiled = task(compile=True)
    saved_before = {"state_dict": compiled.state_dict()}  # as earlier explab versions saved compiled runs
    assert any("_orig_mod" in key for key in saved_before["state_dict"])
    saved = {"state_dict": compiled.state_dict()}
    compiled.on_save_checkpoint(saved)
    assert not any("_orig_mod" in key for key in saved["state_dict"]), "saved under the plain names"
    for checkpoint in (saved, saved_before):
        for loading in (task(compile=False), task(compile=True)):
            restored = {"state_dict": dict(checkpoint["state_dict"])}
            loading.on_load_checkpoint(restored)  # what Lightning calls before it loads the weights, strictly
            loading.load_state_dict(restored["state_dict"])
            weight = plain_weights(loading.state_dict())["backbone.0.weight"]
            assert torch.equal(weight, plain_weights(compiled.state_dict())["backbone.0.weight"])
