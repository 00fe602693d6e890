"""Objectives read from a job's result, and the Pareto front's hypervolume, on in-memory Optuna studies."""

from __future__ import annotations

import math
import re

import optuna
import pytest

from explab.errors import UsageError
from explab.sweep import REPEATS_ATTR
from explab.sweep.objectives import Objectives
from explab.sweep.pareto import REFERENCE_ATTR, hypervolume_history, pareto_front, reference_point


def test_values_come_from_metrics_numbers_or_a_number_per_objective() -> None:
    two = Objectives.from_settings(["maximize", "minimize"], ["val/acc", "perf/fit_seconds"])
    assert two.values({"val/acc": 0.9, "perf/fit_seconds": 12, "other": 1}) == [0.9, 12.0]
    assert Objectives.from_settings(["minimize", "minimize"], None).values((1, 2.5)) == [1.0, 2.5]
    assert Objectives.from_settings("minimize", None).values(3) == [3.0]
    with pytest.raises(KeyError, match="perf/fit_seconds"):
        two.values({"val/acc": 0.9})
    with pytest.raises(TypeError, match="1 value"):
        Objectives.from_settings(["minimize", "minimize"], None).values(3.0)
    with pytest.raises(ValueError, match="objective val/acc is nan"):
        two.values({"val/acc": math.nan, "perf/fit_seconds": 1})


def test_settings_that_cannot_describe_objectives_are_refused() -> None:
    with pytest.raises(UsageError, match="one direction per metric"):
        Objectives.from_settings(["maximize", "minimize"], ["val/acc"])
    with pytest.raises(UsageError, match="minimize, maximize, auto or a list"):
        Objectives.from_settings("up", None)
    assert Objectives.from_settings(["maximize"], "val/acc").direction_setting == "maximize"


@pytest.mark.parametrize(
    ("direction", "metric", "fix"),
    [
        ("maximize", "val/mse_best", "set hydra.sweeper.direction=minimize"),
        ("minimize", "val/acc_best", "set hydra.sweeper.direction=maximize"),
        (["maximize", "maximize"], ["val/acc_best", "perf/fit_seconds"], "set entry 2 of hydra.sweeper.direction to"),
        ("maximize", "time_to/val/acc_0.95", "set hydra.sweeper.direction=minimize"),
    ],
)
def test_a_direction_against_what_the_metrics_name_says_is_refused(direction, metric, fix: str) -> None:
    with pytest.raises(UsageError, match=re.escape(fix)):
        Objectives.from_settings(direction, metric)


@pytest.mark.parametrize(
    ("direction", "metric"),
    [("maximize", "model/parameters"), ("minimize", "model/parameters"), ("maximize", "custom/score")],
)
def test_a_metric_whose_name_says_neither_way_takes_either_direction(direction: str, metric: str) -> None:
    assert Objectives.from_settings(direction, metric).directions == (direction,)


@pytest.mark.parametrize(
    ("direction", "metric", "directions"),
    [
        ("auto", "val/mse_best", ("minimize",)),
        ("auto", "val/acc_best", ("maximize",)),
        ("auto", ["val/acc_best", "perf/fit_seconds"], ("maximize", "minimize")),
        (["auto", "minimize"], ["val/r2_best", "model/parameters"], ("maximize", "minimize")),
    ],
)
def test_auto_takes_each_direction_from_its_metrics_name(direction, metric, directions) -> None:
    """explab's search configs say ``direction: auto``, so a search of a regression experiment minimises."""
    objectives = Objectives.from_settings(direction, metric)
    assert objectives.directions == directions
    assert objectives.direction_setting == (directions[0] if len(directions) == 1 else list(directions))


@pytest.mark.parametrize(
    ("direction", "metric", "says"),
    [
        ("auto", "model/parameters", "whether more model/parameters is better"),
        (["maximize", "auto"], ["val/acc_best", "custom/score"], "whether more custom/score is better"),
        ("auto", None, "hydra.sweeper.metric names none"),
    ],
)
def test_auto_without_a_metric_whose_name_says_which_way_is_refused(direction, metric, says: str) -> None:
    with pytest.raises(UsageError, match=re.escape(says)):
        Objectives.from_settings(direction, metric)


def add(study: optuna.Study, *values: float, **attrs: int) -> None:
    distributions = {"x": optuna.distributions.FloatDistribution(0, 10)}
    trial = optuna.trial.create_trial(params={"x": values[0]}, distributions=distributions, values=list(values))
    trial.user_attrs.update(attrs)
    study.add_trial(trial)


def test_hypervolume_grows_with_the_front_against_a_fixed_point() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    for point in [(1, 3), (2, 2), (3, 1), (3.5, 3.5)]:  # the last is dominated by (2, 2)
        add(study, *point)
    # the staircase under (4, 4): 1x1 + 1x2 + 1x3
    assert hypervolume_history(study, [4, 4]) == [3.0, 5.0, 6.0, 6.0]
    assert [t.number for t in pareto_front(study)] == [0, 1, 2]


def test_the_front_reads_along_the_trade_off_best_first_by_the_first_objective() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for point in [(0.92, 0.28), (0.96, 0.37), (0.91, 0.19), (0.95, 0.29), (0.90, 0.30)]:  # the last is dominated
        add(study, *point)
    assert [t.number for t in pareto_front(study)] == [1, 3, 0, 2]


def test_a_maximised_objective_counts_upwards() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    add(study, 0.9, 2.0)
    add(study, 0.8, 1.0)
    assert hypervolume_history(study, [0.0, 3.0]) == pytest.approx([0.9, 0.9 + 0.8 * 1.0])


def test_the_default_reference_point_is_made_once_and_kept_on_the_study() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert reference_point(study) is None
    add(study, 0.9, 10.0)
    add(study, 0.5, 30.0)
    # the worst of each objective, a tenth of its range further: accuracy 0.5 - 0.04, seconds 30 + 2
    assert reference_point(study) == pytest.approx([0.46, 32.0])
    add(study, 0.1, 90.0)
    assert study.user_attrs[REFERENCE_ATTR] == pytest.approx([0.46, 32.0]), "later trials do not move it"
    assert reference_point(study, [0, 100]) == [0.0, 100.0]


def test_a_repeat_on_the_front_is_named_by_the_trial_that_ran() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    add(study, 1.0, 1.0)
    add(study, 1.0, 1.0, **{REPEATS_ATTR: 0})
    assert [t.number for t in pareto_front(study)] == [0]
    assert hypervolume_history(study, [2, 2]) == [1.0], "a repeat trained nothing: no step of its own"
