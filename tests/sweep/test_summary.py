"""What a sweep's summary names as its best trial."""

from __future__ import annotations

from pathlib import Path

import optuna

from explab.sweep import REPEATS_ATTR
from explab.sweep.summary import best_trained_trial, summarise_study
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
