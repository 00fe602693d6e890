"""Winners over seeds: the search's top configurations trained again with more seeds, through a real sweep."""

from __future__ import annotations

import csv
import re
import shlex
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from explab.comparison import intervals_of
from explab.sweep import REPLICATE_ATTR, is_replicate
from explab.sweep.replicates import SEED_ATTR, replicated_configurations, winner
from explab.sweep.study_record import RECORD_ATTR
from tests.conftest import root_env, run_cli, runs_in
from tests.sweep.test_sweeper import explab_sweep, load

REPLICATED = (
    "hydra/sweeper/pruner=none",
    "hydra.sweeper.n_trials=3",
    "hydra.sweeper.replicates=3",
    "hydra.sweeper.replicate_top=2",
    "trainer.max_epochs=1",
)


def test_two_seeds_that_tie_do_not_make_a_configuration_certain() -> None:
    """A configuration whose two seeds tie, ranked by its own deviation, would have an interval of zero width
    and beat one with a higher mean; on the pooled deviation the higher mean wins."""
    study = optuna.create_study(direction="maximize")
    space = {"lr": FloatDistribution(1e-4, 1e-1)}
    for lr, values in ((1e-3, [0.9630, 0.9778]), (3e-3, [0.9519, 0.9519])):
        [first, *again] = values
        search = create_trial(params={"lr": lr}, distributions=space, value=first)
        study.add_trial(search)
        number = study.trials[-1].number
        for value in again:
            study.add_trial(
                create_trial(params={"lr": lr}, distributions=space, value=value, user_attrs={REPLICATE_ATTR: number})
            )
    configurations = replicated_configurations(study)
    tied = next(c for c in configurations if c.params["lr"] == 3e-3)
    assert tied.interval.std == 0.0 and tied.interval.low < tied.interval.mean, "the spread is pooled"
    assert winner(configurations, maximize=True).params == {"lr": 1e-3}


def test_an_accuracys_interval_over_seeds_ends_at_1() -> None:
    """As explab-report cuts it: the sweep's table and the report's agree."""
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(RECORD_ATTR, {"metric": "val/acc_best"})
    space = {"lr": FloatDistribution(1e-4, 1e-1)}
    for lr, values in ((1e-3, [0.99, 1.0]), (3e-3, [0.97, 0.99])):
        study.add_trial(create_trial(params={"lr": lr}, distributions=space, value=values[0]))
        number = study.trials[-1].number
        study.add_trial(
            create_trial(params={"lr": lr}, distributions=space, value=values[1], user_attrs={REPLICATE_ATTR: number})
        )
    found = {c.params["lr"]: c.interval for c in replicated_configurations(study)}
    assert found[1e-3].high == 1.0 and found[3e-3].high == 1.0 and 0 < found[3e-3].low < found[1e-3].low


def test_a_configuration_that_failed_on_a_seed_ranks_after_those_that_completed_every_seed() -> None:
    """Its interval stands on the seeds that trained to their end: ranked by it alone, a configuration that
    diverged on one seed of three could win on its two survivors."""
    study = optuna.create_study(direction="maximize")
    space = {"lr": FloatDistribution(1e-4, 1e-1)}
    for lr, values, failed in ((1e-3, [0.90, 0.91, 0.92], []), (3e-2, [0.96, 0.97], [44])):
        study.add_trial(create_trial(params={"lr": lr}, distributions=space, value=values[0]))
        number = study.trials[-1].number
        for seed, value in zip((43, 44), values[1:], strict=False):
            attrs = {REPLICATE_ATTR: number, SEED_ATTR: seed}
            study.add_trial(create_trial(params={"lr": lr}, distributions=space, value=value, user_attrs=attrs))
        for seed in failed:
            attrs = {REPLICATE_ATTR: number, SEED_ATTR: seed}
            study.add_trial(
                create_trial(params={"lr": lr}, distributions=space, state=TrialState.FAIL, user_attrs=attrs)
            )
    # a seed that failed once and then completed is whole again
    study.add_trial(
        create_trial(
            params={"lr": 1e-3},
            distributions=space,
            state=TrialState.FAIL,
            user_attrs={REPLICATE_ATTR: 0, SEED_ATTR: 43},
        )
    )
    configurations = {c.params["lr"]: c for c in replicated_configurations(study)}
    assert configurations[3e-2].failed_seeds == (44,) and configurations[1e-3].failed_seeds == ()
    assert configurations[3e-2].interval.low > configurations[1e-3].interval.low, "the survivors look better"
    assert winner(list(configurations.values()), maximize=True).params == {"lr": 1e-3}


@pytest.mark.slow
def test_a_replicate_that_fails_is_not_trained_again_and_its_seed_is_named(tmp_path: Path) -> None:
    """The sweep trained a failed replicate again and again in one command, and stopped with "1 trial failed in
    a row ... Fix the search space or the code" once it had failed max_failures times (n_trials by default):
    a seed that diverges diverges again, so the same command run again could never finish."""
    attempts = {1: [(43, "COMPLETE"), (44, "FAIL")], 2: [(43, "COMPLETE"), (44, "FAIL"), (44, "FAIL")]}
    for command, expected in attempts.items():  # the command run again tries the failed seed once more
        done = explab_sweep(
            tmp_path,
            "hydra/sweeper/pruner=none",
            "hydra.sweeper.n_trials=1",
            "hydra.sweeper.replicates=3",
            "hydra.sweeper.replicate_top=1",
            "trainer.max_epochs=1",
            "+callbacks.fail._target_=tests.support.callbacks.FailForSeed",
            "+callbacks.fail.seed=${seed}",
            "+callbacks.fail.fails_on=44",
            env=root_env(),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        study = load(tmp_path, "digits_cnn_optuna", "mlruns/optuna/digits_cnn.journal")
        replicates = sorted((t.user_attrs[SEED_ATTR], t.state.name) for t in study.trials if is_replicate(t))
        assert replicates == expected, f"command {command}: seed 44 is tried once per command"
    assert "trial 0 over 2 seeds: mean " in done.stdout and "failed on seed 44 (ranked after" in done.stdout
    [parent] = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if r.data.tags.get("explab.sweep") == "parent"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    table = client.download_artifacts(parent.info.run_id, "sweep/replicates.csv", str(tmp_path / "download"))
    with open(table) as rows:
        assert [row["failed seeds"] for row in csv.DictReader(rows)] == ["44"]


def test_replicates_below_one_are_refused_before_any_trial(tmp_path: Path) -> None:
    done = explab_sweep(tmp_path, "hydra.sweeper.replicates=0")
    assert done.returncode != 0 and "hydra.sweeper.replicates must be an integer >= 1" in done.stderr
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == []


@pytest.mark.slow
def test_the_winner_is_the_top_configuration_with_the_best_lower_bound(tmp_path: Path) -> None:
    for _ in range(2):  # the second command finds the search and its replicates done: it trains nothing
        done = explab_sweep(tmp_path, *REPLICATED)
        assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path, "digits_cnn_optuna", "mlruns/optuna/digits_cnn.journal")
    search = [t for t in study.trials if not is_replicate(t)]
    replicates = [t for t in study.trials if is_replicate(t)]
    assert len(search) == 3 and len(replicates) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    top = sorted(search, key=lambda t: (-t.value, t.number))[:2]
    assert {t.user_attrs[REPLICATE_ATTR] for t in replicates} == {t.number for t in top}
    assert sorted(t.user_attrs[SEED_ATTR] for t in replicates) == [43, 43, 44, 44], "seed 42's next two"

    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    [parent] = [r for r in runs if r.data.tags.get("explab.sweep") == "parent"]
    children = {int(r.data.tags["optuna.trial_number"]): r for r in runs if r is not parent}
    assert len(children) == 7
    values: dict[int, list[float]] = {}
    for trial in top:
        again = [children[t.number] for t in replicates if t.user_attrs[REPLICATE_ATTR] == trial.number]
        assert all(r.data.tags["explab.replicate_of"] == str(trial.number) for r in again)
        assert sorted(r.data.params["seed"] for r in again) == ["43", "44"]
        values[trial.number] = [children[trial.number].data.metrics["val/acc_best"]] + [
            r.data.metrics["val/acc_best"] for r in again
        ]
    lows = dict(zip(values, (i.low for i in intervals_of(list(values.values()), "pooled")), strict=True))
    expected = max(lows, key=lows.__getitem__)
    assert parent.data.tags["explab.winner_trial"] == str(expected)
    assert parent.data.metrics[f"replicates/trial_{expected}/ci_low"] == pytest.approx(lows[expected])

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    folder = client.download_artifacts(parent.info.run_id, "sweep/replicates.csv", str(tmp_path / "download"))
    with open(folder) as table:
        rows = {int(row["trial"]): row for row in csv.DictReader(table)}
    assert set(rows) == set(values) and rows[expected]["winner"] == "True"
    assert "Winner over seeds" in done.stdout
    assert parent.data.metrics["trials_replicates"] == 4
    status = run_cli("explab-sweep", "status", "digits_cnn_optuna", "--mlruns-dir", f"{tmp_path}/mlruns", cwd=tmp_path)
    assert "7 complete, 0 pruned, 0 failed, 0 running (0 of the complete are repeats; 4 replicates" in status.stdout
    winning = children[expected].info.run_id
    assert f"winner over seeds: trial {expected} (MLflow run {winning}), mean " in status.stdout, status.stdout
    assert f"over 3 seeds, 95% interval [{lows[expected]:.6g}, " in status.stdout

    # the sweep ends with the report of its replicates, as a command that works where it was typed
    said = re.search(r"each configuration over its seeds: (explab-report .*)", done.stdout)
    assert said, done.stdout[-2000:]
    command = shlex.split(said.group(1))
    assert command[1:] == [
        "experiment=digits_cnn",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        "sweep=digits_cnn_optuna",
        "ci=pooled",
        "metrics=val/acc_best",
    ]
    report = run_cli(*command, cwd=tmp_path, timeout=120)
    assert report.returncode == 0, report.stderr[-2000:]
    # the table's rows: | configuration | n | ...; the third configuration has only its search trial
    rows = [line.split("|")[1:-1] for line in report.stdout.splitlines() if line.startswith("| ")]
    assert sorted(cells[1].strip() for cells in rows[1:]) == ["1", "3", "3"], report.stdout
    assert f"[{lows[expected]:.4f}, " in report.stdout, "the report's interval is the sweep's"
