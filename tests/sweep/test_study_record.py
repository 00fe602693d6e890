"""A resumed study is searched as it was started, or the changes are accepted by name."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from explab.errors import UsageError
from explab.sweep.study_record import RECORD_ATTR, check_definition, differences, sweep_definition
from tests.sweep.test_sweeper import load, sweep_plain_app

SPACE = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True), "model.depth": IntDistribution(1, 3)}


def test_differences_name_each_change_and_ignore_resource_settings() -> None:
    then = sweep_definition(SPACE, "maximize", "val/acc", ["trainer.max_epochs=5", "torch_threads=1"])
    now = sweep_definition(
        {**SPACE, "model.depth": IntDistribution(1, 5)}, "minimize", "val/loss", ["torch_threads=8", "seed=3"]
    )
    found = differences(then, now)
    assert any(f.startswith("search space model.depth: IntDistribution(high=3") for f in found)
    assert "direction: maximize then, minimize now" in found
    assert "metric: val/acc then, val/loss now" in found
    assert "fixed override trainer.max_epochs=5 dropped" in found
    assert "fixed override seed=3 added" in found
    assert not any("torch_threads" in f for f in found), "threads change speed, not results"
    assert differences(then, then) == []


def test_where_trials_write_is_no_part_of_the_definition() -> None:
    """A sweep given paths.* on the command line was refused as "another sweep definition" once the project
    moved, or the cluster's scratch path changed; its study recorded before then kept those overrides."""
    fixed = ["trainer.max_epochs=5", "paths.log_dir=/home/ada/explab/logs", "paths.mlruns_dir=/home/ada/explab/mlruns"]
    then = sweep_definition(SPACE, "maximize", "val/acc", fixed)
    assert then["fixed"] == ["trainer.max_epochs=5"]
    moved = sweep_definition(SPACE, "maximize", "val/acc", ["trainer.max_epochs=5", "paths.log_dir=/scratch/ada/logs"])
    assert differences(then, moved) == []
    assert differences({**then, "fixed": sorted(fixed)}, moved) == [], "as a study recorded them before"
    assert differences(then, sweep_definition(SPACE, "maximize", "val/acc", ["trainer.max_epochs=6"])) == [
        "fixed override trainer.max_epochs=5 dropped",
        "fixed override trainer.max_epochs=6 added",
    ]


def test_a_changed_study_is_refused_or_accepted_and_then_recorded() -> None:
    study = optuna.create_study()
    first = sweep_definition(SPACE, "minimize", None, [])
    assert check_definition(study, first, allow_changes=False) == []
    assert study.user_attrs[RECORD_ATTR] == first
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    changed = sweep_definition({"optimizer.lr": SPACE["optimizer.lr"]}, "minimize", None, [])
    with pytest.raises(UsageError, match=r"search space model.depth: .* then, \(not searched\) now"):
        check_definition(study, changed, allow_changes=False)
    assert study.user_attrs[RECORD_ATTR] == first, "a refusal changes nothing"
    assert check_definition(study, changed, allow_changes=True) == [
        "search space model.depth: IntDistribution(high=3, log=False, low=1, step=1) then, (not searched) now"
    ]
    assert study.user_attrs[RECORD_ATTR] == changed


def test_a_study_without_trials_takes_the_new_definition() -> None:
    study = optuna.create_study()
    check_definition(study, sweep_definition(SPACE, "minimize", None, ["y=1"]), allow_changes=False)
    rerun = sweep_definition(SPACE, "minimize", None, ["y=2"])
    assert check_definition(study, rerun, allow_changes=False) == [], "no trial would fail to compare"
    assert study.user_attrs[RECORD_ATTR] == rerun
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    with pytest.raises(UsageError, match="fixed override y=3 added"):
        check_definition(study, sweep_definition(SPACE, "minimize", None, ["y=3"]), allow_changes=False)


@pytest.mark.slow
def test_rerun_with_another_search_is_refused_before_any_trial(tmp_path: Path) -> None:
    assert sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=2").returncode == 0
    changed = sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=4", "x=interval(-1.0, 1.0)", "y=3")
    assert changed.returncode == 1, changed.stderr[-2000:]
    assert "search space x: FloatDistribution(high=4.0" in changed.stderr
    assert "fixed override y=3 added" in changed.stderr and "allow_changes=true" in changed.stderr
    assert len(load(tmp_path, "plain").trials) == 2, "no trial ran"
    accepted = sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=4", "y=3", "hydra.sweeper.allow_changes=true")
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert len(load(tmp_path, "plain").trials) == 4
