"""What a sweep checks before its study exists: every searched key and choice composes into the job's config."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from explab.config import config_dir
from explab.errors import UsageError
from explab.sweep.checks import check_objective, check_space_composes, selected_by_seed, selected_on_test
from explab.sweep.space import parse_conditions, parse_search_space
from explab.sweep.trial import TrialJob


@pytest.fixture
def compose_job() -> Iterator:
    """The job config of a ``digits_optuna`` sweep, composed by Hydra from the given overrides."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):

        def job(overrides: list[str]) -> DictConfig:
            return compose("train", overrides=["hparams_search=digits_optuna", *overrides])

        yield job
    GlobalHydra.instance().clear()


def check(compose_job, params: dict | None, *arguments: str) -> None:
    space, fixed = parse_search_space(params, list(arguments))
    check_space_composes(compose_job, space, parse_conditions(params, space), fixed)


def test_the_shipped_spaces_compose(compose_job) -> None:
    check(compose_job, None, "optimizer.lr=tag(log, interval(1e-4, 3e-2))", "optimizer=choice(adam,adamw,sgd)")
    check(compose_job, {"model.backbone.depth": "range(1, 4)"}, "trainer.max_epochs=2")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["optimizer.lrr=interval(0.01, 0.1)"],
            r"sets optimizer.lrr, which the job's config does not have. Did you mean: optimizer.lr\?",
        ),
        (
            ["optimizer=choice(adam, adamx)"],
            r"draws optimizer=adamx, which is not a config of optimizer/; its options: adam, adamw, lazy_adam, "
            r"rmsprop, sgd$",
        ),
    ],
    ids=["unknown-key", "unknown-option"],
)
def test_a_search_space_typo_is_refused(compose_job, arguments: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        check(compose_job, None, *arguments)


def test_a_key_of_one_config_is_composed_under_its_condition(compose_job) -> None:
    """Only SGD has a momentum: searched for it alone, it composes; searched for every optimizer, it cannot."""
    momentum = {"type": "float", "low": 0.0, "high": 0.99}
    params = {"optimizer": "choice(adam, sgd)", "optimizer.momentum": {**momentum, "when": {"optimizer": "sgd"}}}
    check(compose_job, params)
    with pytest.raises(UsageError, match=r"sets optimizer.momentum, which the job's config does not have"):
        check(compose_job, {"optimizer": "choice(adam, sgd)", "optimizer.momentum": momentum})


@pytest.mark.parametrize("no_validation", ["data.val_fraction=0", "+trainer.limit_val_batches=0"])
def test_a_validation_objective_without_validation_is_refused(compose_job, no_validation: str) -> None:
    """Every trial would train, then fail for want of val/acc_best."""
    check_objective(compose_job([]), "val/acc_best")
    with pytest.raises(UsageError, match=r"never logs when the fit does not validate .*keep a validation split"):
        check_objective(compose_job([no_validation]), "val/acc_best")
    check_objective(compose_job([no_validation, "optimized_metric=test/acc"]), "test/acc")


@pytest.mark.parametrize(
    ("objective", "hint"),
    [("test/acc", "a test/ metric needs test=true"), ("val/acc_best", "a val/ metric needs validation")],
)
def test_a_trial_without_its_objective_fails_saying_what_would_log_it(objective: str, hint: str) -> None:
    """What a job says when a check before the sweep could not know (a custom task, a callback that drops it)."""
    job = TrialJob(OmegaConf.create({"optuna_trial": {"objective": [objective], "prune": False}}))
    with pytest.raises(UsageError, match=rf"optimises '{objective}', which this job did not return") as refused:
        job.check_objective({"train/loss": 0.1})
    assert str(refused.value).endswith(f"(it returned train/loss); {hint}")


def test_a_search_by_a_test_metric_is_said_to_spend_the_test_set() -> None:
    assert selected_on_test(("val/acc_best",)) is None
    assert selected_on_test(("val/loss", "model/parameters")) is None
    said = selected_on_test(("val/acc_best", "test/f1"))
    assert said is not None and said.startswith("the search chooses its hyperparameters by test/f1, a test-set metric")


def test_a_search_that_draws_the_seed_is_said_to_choose_luck() -> None:
    assert selected_by_seed(["optimizer.lr", "model.backbone.depth"], "seed", grid=False) is None
    assert selected_by_seed(["seed"], "seed", grid=True) is None, "a grid runs every seed: seeds in parallel"
    assert selected_by_seed(["seed"], "data.seed", grid=False) is None, "the key hydra.sweeper.seed_key names"
    said = selected_by_seed(["optimizer.lr", "data.seed"], "data.seed", grid=False)
    assert said is not None and said.startswith("the search draws data.seed as a hyperparameter")
