"""What a sweep's summary names as its best trial."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna

from explab.sweep import REPEATS_ATTR
from explab.sweep.continuation import RUN_ATTR
from explab.sweep.summary import MIXED_CODE_TAG, MIXED_HARDWARE_TAG, best_trained_trial, summarise_study
from explab.tracking import TrackedRun
from tests.conftest import tracking_uri_for


def test_the_best_trial_named_is_one_that_ran_when_a_repeat_ties_with_it() -> None:
    """Storages break ties by order; a repeat (told its original's value, nothing trained) must not be named."""
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


def test_the_summary_of_a_one_trial_study_draws_its_plots_without_warnings(tmp_path: Path, recwarn) -> None:
    """Importances of a single trial warned on every small sweep's console; the plot already shows them equal."""
    study = optuna.create_study()
    distributions = {"x": optuna.distributions.FloatDistribution(0.0, 2.0)}
    study.add_trial(optuna.trial.create_trial(params={"x": 1.0}, distributions=distributions, value=0.5))
    run = TrackedRun.create(tracking_uri_for(tmp_path), "sweep", str(tmp_path / "artifacts"))
    summarise_study(study, run)
    run.end(None)
    assert not [str(w.message) for w in recwarn if issubclass(w.category, UserWarning)]
    assert run.client.list_artifacts(run.run_id, "sweep/plots"), "the plots were drawn"


def test_plots_of_a_numeric_choice_say_nothing_of_matplotlibs_categories(tmp_path: Path, caplog) -> None:
    """A searched batch size, choice(32, 64), is categorical: Optuna plots its values as text, and matplotlib
    said so at INFO, twice per plot, into every such sweep's console."""
    study = optuna.create_study(direction="maximize")
    distributions = {"batch_size": optuna.distributions.CategoricalDistribution([32, 64])}
    for value, size in ((0.9, 32), (0.8, 64), (0.85, 32)):
        study.add_trial(
            optuna.trial.create_trial(params={"batch_size": size}, distributions=distributions, value=value)
        )
    run = TrackedRun.create(tracking_uri_for(tmp_path), "sweep", str(tmp_path / "artifacts"))
    with caplog.at_level(logging.INFO):
        summarise_study(study, run)
    run.end(None)
    assert run.client.list_artifacts(run.run_id, "sweep/plots"), "the plots are drawn"
    assert not [r for r in caplog.records if r.name.startswith("matplotlib")], caplog.text


def test_a_timing_objective_over_trials_on_different_hardware_is_warned_and_tagged(tmp_path: Path, caplog) -> None:
    """Detached workers on a mixed partition: a front of fit seconds then ranks machines, not configurations."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    distributions = {"x": optuna.distributions.FloatDistribution(0.0, 2.0)}
    parent = TrackedRun.create(tracking_uri_for(tmp_path), "sweep", str(tmp_path / "artifacts"))
    for number, gpu in enumerate(["NVIDIA A100-SXM4-80GB", "NVIDIA H200", "NVIDIA H200"]):
        child = parent.client.create_run(
            parent.experiment_id, tags={"mlflow.parentRunId": parent.run_id, "hardware.gpu": gpu}
        )
        attrs = {RUN_ATTR: child.info.run_id}
        trial = optuna.trial.create_trial(
            params={"x": number / 2}, distributions=distributions, values=[0.9, 10.0 + number], user_attrs=attrs
        )
        study.add_trial(trial)

    with caplog.at_level(logging.WARNING, logger="explab.sweep.summary"):
        summarise_study(study, parent, ("val/acc_best", "perf/fit_seconds"), (0.0, 20.0))
    said = "hardware.gpu NVIDIA A100-SXM4-80GB (1 run), NVIDIA H200 (2 runs)"
    assert f"trained on different hardware ({said}): perf/fit_seconds compare machines" in caplog.text
    assert parent.client.get_run(parent.run_id).data.tags[MIXED_HARDWARE_TAG] == said

    caplog.clear()  # accuracy alone moves by about what a seed moves it: nothing to warn of
    with caplog.at_level(logging.WARNING, logger="explab.sweep.summary"):
        summarise_study(study, parent, ("val/acc_best", "val/loss"), (0.0, 20.0))
    assert "different hardware" not in caplog.text
    parent.end(None)


def test_trials_trained_from_different_code_are_warned_and_tagged(tmp_path: Path, caplog) -> None:
    """A sweep resumed after a fix went on with the trials trained before it, its sampler and best trial
    weighing both alike, with nothing said."""
    study = optuna.create_study(direction="maximize")
    distributions = {"x": optuna.distributions.FloatDistribution(0.0, 2.0)}
    parent = TrackedRun.create(tracking_uri_for(tmp_path), "sweep", str(tmp_path / "artifacts"))
    for number, commit in enumerate(["1a2b3c4d5e", "1a2b3c4d5e", "9f8e7d6c5b"]):
        child = parent.client.create_run(
            parent.experiment_id, tags={"mlflow.parentRunId": parent.run_id, "git.commit": commit}
        )
        trial = optuna.trial.create_trial(
            params={"x": number / 2}, distributions=distributions, value=0.9, user_attrs={RUN_ATTR: child.info.run_id}
        )
        study.add_trial(trial)
        if number == 1:
            with caplog.at_level(logging.WARNING, logger="explab.sweep.summary"):
                summarise_study(study, parent)
            assert "different code" not in caplog.text, "two trials of one commit"
    with caplog.at_level(logging.WARNING, logger="explab.sweep.summary"):
        summarise_study(study, parent)
    said = "git.commit 1a2b3c4 (2 runs), 9f8e7d6 (1 run)"
    assert f"trained from different code ({said}): the sampler and the best trial weigh them alike" in caplog.text
    assert parent.client.get_run(parent.run_id).data.tags[MIXED_CODE_TAG] == said
    parent.end(None)
