"""Optuna sweeps through real `-m` subprocesses, with real journal storages and MLflow stores in tmp_path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from explab.configurations import group_runs
from explab.errors import UsageError
from explab.eval import _fetch_best_checkpoint
from explab.reproduce import config_from_recorded_run
from explab.sweep.pruner import PRUNER_ATTR
from explab.sweep.storage import open_storage
from explab.sweep.summary import best_trained_trial
from explab.sweep.telling import ERROR_ATTR
from tests.conftest import BIN, as_from_a_terminal, root_env, run_cli, runs_in, tracking_uri_for
from tests.support.formats import write_mnist

APP = Path(__file__).parents[1] / "support" / "apps" / "quadratic.py"


def plain_app_command(tmp_path: Path, study: str, *args: str, sweep_x: bool = True) -> list[str]:
    """Sweep ``x`` (unless not ``sweep_x``) of the quadratic app with explab's sweeper, on a journal file in
    ``tmp_path``."""
    return [
        sys.executable,
        str(APP),
        "-m",
        "hydra/sweeper=explab_optuna",
        f"hydra.sweeper.storage=journal:///{tmp_path}/optuna.journal",
        f"hydra.sweeper.study_name={study}",
        "hydra.sweeper.direction=minimize",
        *(["x=interval(-4.0, 4.0)"] if sweep_x else []),
        *args,
    ]


def sweep_plain_app(
    tmp_path: Path, *args: str, study: str = "plain", sweep_x: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = plain_app_command(tmp_path, study, f"hydra.sweep.dir={tmp_path}/multirun", *args, sweep_x=sweep_x)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)


def load(tmp_path: Path, study: str, journal: str = "optuna.journal") -> optuna.Study:
    """The study in ``tmp_path/journal`` (explab's search configs keep theirs in mlruns/optuna/EXPERIMENT.journal)."""
    open_storage.cache_clear()
    return optuna.load_study(study_name=study, storage=open_storage(f"journal:///{tmp_path}/{journal}"))


def load_once_written(tmp_path: Path, study: str, journal: str = "optuna.journal") -> optuna.Study | None:
    """The study of a sweep still starting, or None before its journal holds it.

    The journal file appears a moment before the record that creates the study, so a poll can see one
    without the other.
    """
    if not (tmp_path / journal).exists():
        return None
    try:
        return load(tmp_path, study, journal)
    except KeyError:
        return None


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.trials]


@pytest.mark.slow
def test_plain_hydra_app_is_swept_and_a_raising_trial_does_not_stop_it(tmp_path: Path) -> None:
    done = sweep_plain_app(
        tmp_path, "hydra.sweeper.n_trials=4", "fail_on_trial=1", "y=range(0, 3)", "hydra.sweeper.sampler.seed=3"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path, "plain")
    assert states(study).count("COMPLETE") == 4
    assert states(study)[1] == "FAIL"
    assert "fails on purpose" in study.trials[1].user_attrs["explab.error"]
    assert {t.params["y"] for t in study.trials} <= {0, 1, 2}, "range(0, 3) excludes 3, as in Python"
    best = study.best_trial
    assert best.value == pytest.approx((best.params["x"] - 2) ** 2 + best.params["y"])
    # a seeded TPE makes a sampler per trial; the option explab sets on purpose is not warned about each time
    assert "ExperimentalWarning" not in done.stderr, done.stderr[-3000:]


def test_a_trial_whose_code_calls_sys_exit_fails_and_the_sweep_goes_on(tmp_path: Path, monkeypatch) -> None:
    """Hydra's launcher catches a job's ``Exception`` only: a trial whose code called ``sys.exit(3)`` ended the
    whole sweep with status 3 and no word of why."""
    monkeypatch.setenv("QUADRATIC_EXIT_ON_TRIAL", "1")
    done = sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=3")
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path, "plain")
    assert states(study) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    said = study.trials[1].user_attrs["explab.error"]
    assert said.startswith("the job's code called sys.exit(3) in main ("), said
    assert "quadratic.py, line " in said and said.endswith("Raise an exception where the code exits"), said


@pytest.mark.slow
@pytest.mark.parametrize(
    ("failing", "limit", "refusal"),
    [
        ("0", "hydra.sweeper.max_failures=1", "Error: 1 trial failed in a row; the last error was: trial 0 fails"),
        (
            "1",
            "hydra.sweeper.max_failure_rate=0.3",
            "Error: 1 of the 2 trials run here failed, more than max_failure_rate=0.3; the last error was: trial 1",
        ),
    ],
)
def test_too_many_failed_trials_stop_the_sweep_and_the_same_command_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str, limit: str, refusal: str
) -> None:
    """The message says to fix the cause and run the same command: the study keeps what ran, and goes on."""
    monkeypatch.setenv("QUADRATIC_FAIL_ON_TRIAL", failing)
    done = sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=4", limit)
    assert done.returncode == 1 and refusal in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "then run the same command to resume" in done.stderr
    stopped = states(load(tmp_path, "plain"))
    assert stopped == [*["COMPLETE"] * int(failing), "FAIL"], "the sweep stopped at the failure"
    monkeypatch.delenv("QUADRATIC_FAIL_ON_TRIAL")  # the cause, fixed
    done = sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=4", limit)
    assert done.returncode == 0, done.stderr[-3000:]
    assert states(load(tmp_path, "plain")) == [*stopped, *["COMPLETE"] * (4 - int(failing))]


@pytest.mark.slow
def test_rerun_resumes_to_exactly_n_trials(tmp_path: Path) -> None:
    assert sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=3").returncode == 0
    assert sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=5").returncode == 0
    again = sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=5")
    assert again.returncode == 0
    study = load(tmp_path, "plain")
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert states(study) == ["COMPLETE"] * 5
    assert "5/5 trials finished" in again.stderr + again.stdout


@pytest.mark.slow
def test_two_workers_share_one_study_without_duplicates(tmp_path: Path) -> None:
    cmd = plain_app_command(tmp_path, "shared", "hydra.sweeper.n_trials=8", "sleep=0.3")
    workers = [
        subprocess.Popen(
            [*cmd, f"hydra.sweep.dir={tmp_path}/w{i}"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    study = load(tmp_path, "shared")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 8
    assert len({t.number for t in complete}) == 8
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    workers_seen = {t.user_attrs["explab.worker"] for t in complete}
    assert len(workers_seen) == 2, "both workers ran trials"


@pytest.mark.slow
@pytest.mark.parametrize("skip_repeats", [True, False])
def test_a_repeated_point_is_told_its_value_without_running_again(tmp_path: Path, skip_repeats: bool) -> None:
    """Two points, five trials asked for: each point runs once, and the rest repeat finished trials."""
    cmd = [a for a in plain_app_command(tmp_path, "repeats") if not a.startswith("x=")]
    done = subprocess.run(
        [
            *cmd,
            "x=choice(1.0, 2.0)",
            "hydra.sweeper.n_trials=5",
            "hydra.sweeper.sampler.seed=1",
            f"hydra.sweeper.skip_repeats={skip_repeats}",
            f"hydra.sweep.dir={tmp_path}/multirun",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path, "repeats")
    ran = sorted(int(job.name) for job in (tmp_path / "multirun").iterdir() if job.name.isdigit())
    repeats = [t for t in study.trials if "explab.repeats_trial" in t.user_attrs]
    if not skip_repeats:
        assert len(ran) == 5 and not repeats, "every proposal runs"
        return
    trained = [t for t in study.trials if t.number in ran]
    assert sorted(t.params["x"] for t in trained) == [1.0, 2.0], "each point ran exactly once"
    last_five = study.trials[-5:]
    assert all("explab.repeats_trial" in t.user_attrs for t in last_five), "it stops after five repeats in a row"
    assert "the search space looks exhausted" in done.stderr + done.stdout
    best = best_trained_trial(study)
    assert best.number in ran and best.params == {"x": 2.0}, "the best trial named is one that ran"
    assert f"Best trial {best.number}:" in done.stderr + done.stdout
    for trial in repeats:
        original = study.trials[trial.user_attrs["explab.repeats_trial"]]
        assert trial.state == original.state == TrialState.COMPLETE
        assert (trial.params, trial.value) == (original.params, original.value)


def explab_sweep(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The digits search in ``tmp_path``; ``env=root_env()`` where the jobs load the suite's helpers."""
    return run_cli(
        "explab-train",
        "-m",
        "hparams_search=digits_optuna",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs",
        *args,
        cwd=tmp_path,
        env=env,
    )


@pytest.mark.slow
def test_a_sweep_whose_jobs_work_in_their_own_folders_finds_its_study_from_the_launch_folder(tmp_path: Path) -> None:
    """With ``hydra.job.chdir=true`` and ``paths.mlruns_dir=store``, each trial looked for the study's journal
    (and its store) inside its job folder: every trial failed with "No such file or directory:
    'store/optuna/digits_cnn.journal'"."""
    done = run_cli(
        "explab-train", "-m", "hparams_search=digits_optuna", "hydra.sweeper.n_trials=2", "trainer.max_epochs=1",
        "paths.log_dir=logs", "paths.mlruns_dir=store", "hydra.job.chdir=true", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path, "digits_cnn_optuna", "store/optuna/digits_cnn.journal")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    children = [r for r in runs_in(tmp_path / "store", "digits_cnn") if "optuna_trial.number" in r.data.params]
    assert len(children) == 2, "the trials' runs are in the store the command named"


@pytest.mark.slow
def test_a_custom_search_space_that_rules_a_draw_out_or_raises_ends_that_trial_alone(tmp_path: Path) -> None:
    """It raised out of the sweep: a traceback stopped every other trial, and the trial was left RUNNING."""
    done = explab_sweep(
        tmp_path, "hydra.sweeper.n_trials=4", "trainer.max_epochs=1",
        "hydra.sweeper.custom_search_space=tests.support.search_spaces.fails_in_trial_1", env=root_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path, "digits_cnn_optuna", "mlruns/optuna/digits_cnn.journal")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert study.trials[1].user_attrs[ERROR_ATTR] == (
        "custom_search_space tests.support.search_spaces.fails_in_trial_1 raised ValueError: a bug in the search space"
    )
    assert "ValueError: a bug in the search space" in done.stdout + done.stderr, "its traceback is in the log"

    pruned = explab_sweep(
        tmp_path, "hydra.sweeper.n_trials=4", "trainer.max_epochs=1",
        "hydra.sweeper.custom_search_space=tests.support.search_spaces.rules_out_odd_trials",
        "hydra.sweeper.study_name=odd", env=root_env(),
    )  # fmt: skip
    assert pruned.returncode == 0, pruned.stderr[-3000:]
    odd = load(tmp_path, "odd", "mlruns/optuna/digits_cnn.journal")
    assert [t.state.name for t in odd.trials] == ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED"]
    assert all("model.backbone.dropout" in t.params for t in odd.trials)
    trained = [
        r.data.params for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna_trial.number" in r.data.params
    ]
    numbers = sorted(p["optuna_trial.number"] for p in trained if p["optuna_trial.study_name"] == "odd")
    assert numbers == ["0", "2"], "a draw ruled out trains nothing"

    nothing = explab_sweep(
        tmp_path, "hydra.sweeper.n_trials=2",
        "hydra.sweeper.custom_search_space=tests.support.search_spaces.fails_or_rules_out",
        "hydra.sweeper.study_name=none", env=root_env(),
    )  # fmt: skip
    # pruned trials reset the count of failures in a row: the study fills with no result, which is an error
    assert nothing.returncode == 1
    assert (
        "Error: no trial of study 'none' completed (2 pruned, 2 failed; the last failure: custom_search_space "
        "tests.support.search_spaces.fails_or_rules_out raised ValueError: a bug in the search space), so it has "
        "no best trial"
    ) in nothing.stderr


def test_a_custom_search_space_that_cannot_be_loaded_is_refused_before_any_trial(tmp_path: Path) -> None:
    """It was looked up as each trial was drawn: a typo failed every trial in turn."""
    done = explab_sweep(tmp_path, "hydra.sweeper.custom_search_space=tests.support.search_spaces.fails_in_trial_2")
    assert done.returncode == 1
    assert (
        "Error: hydra.sweeper.custom_search_space=tests.support.search_spaces.fails_in_trial_2 cannot be loaded ("
        in (done.stderr)
    )
    assert "Error getting callable" not in done.stderr, "said once"
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == []


@pytest.mark.slow
def test_a_search_that_draws_the_seed_is_warned_before_its_first_trial(tmp_path: Path) -> None:
    """TPE given ``seed=choice(...)`` ran it as a hyperparameter without a word, and named the luckiest seed the
    best configuration."""
    done = explab_sweep(tmp_path, "seed=choice(1,2,3)", "hydra.sweeper.n_trials=1", "trainer.max_epochs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    assert "the search draws seed as a hyperparameter: the best trial is then partly the luckiest seed" in said
    assert said.index("luckiest seed") < said.index("Launching 1 jobs"), "said before the first trial"


def test_wrong_metric_fails_before_any_trial(tmp_path: Path) -> None:
    done = explab_sweep(tmp_path, "optimized_metric=val/accuracy")
    assert done.returncode != 0
    assert "never logs" in done.stderr and "val/acc_best" in done.stderr
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == []


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["val/loss", "test/acc"])
def test_the_pruner_follows_the_metric_the_study_optimises(tmp_path: Path, metric: str) -> None:
    """``hydra.sweeper.metric`` given instead of ``optimized_metric``: the trials reported validation accuracy
    to a study minimising the loss, so the pruner stopped the most accurate trials."""
    done = explab_sweep(tmp_path, f"hydra.sweeper.metric={metric}", "hydra.sweeper.n_trials=2", "trainer.max_epochs=2")
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path, "digits_cnn_optuna", "mlruns/optuna/digits_cnn.journal")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2
    if metric == "val/loss":  # each trial's last report is the loss it ended with
        assert study.direction == optuna.study.StudyDirection.MINIMIZE
        assert [t.intermediate_values[1] for t in complete] == pytest.approx([t.value for t in complete])
        assert "a test-set metric" not in done.stdout + done.stderr
    else:  # known only after the fit: nothing to report, and the sweep says the pruner prunes nothing
        assert [t.intermediate_values for t in complete] == [{}, {}]
        assert "test/acc is known only once the fit is over: no trial will be pruned" in done.stdout + done.stderr
        # chosen by the test set, the winner's test/acc is no longer an estimate on unseen data
        assert "the search chooses its hyperparameters by test/acc, a test-set metric" in done.stdout + done.stderr


@pytest.mark.slow
def test_a_trial_resumed_with_other_settings_says_its_study_keeps_the_value(tmp_path: Path) -> None:
    """Training the best trial on (resume=, more epochs) changes its run alone: the researcher is told that the
    study, its best trial and its summary keep what the trial scored."""
    done = explab_sweep(tmp_path, "hydra.sweeper.n_trials=1", "trainer.max_epochs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    [trial] = load(tmp_path, "digits_cnn_optuna", "mlruns/optuna/digits_cnn.journal").trials
    [child] = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
    resumed = run_cli(
        "explab-train",
        f"resume={child.info.run_id}",
        "trainer.max_epochs=2",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = f"run {child.info.run_id} is trial 0 of study digits_cnn_optuna, COMPLETE there: the study keeps the trial"
    assert said in resumed.stdout + resumed.stderr
    assert load(tmp_path, "digits_cnn_optuna", "mlruns/optuna/digits_cnn.journal").trials[0].value == trial.value


@pytest.mark.slow
def test_a_pruned_trial_resumed_to_its_end_finishes_without_its_pruning_as_its_reason(tmp_path: Path) -> None:
    """Trained on to its last epoch, a pruned trial's run ended FINISHED still tagged "TrialPruned: pruned after
    epoch 0" as its reason, and the researcher was not told that the study keeps the trial pruned."""
    done = explab_sweep(
        tmp_path,
        "hydra.sweeper.n_trials=1",
        "trainer.max_epochs=2",
        "hydra.sweeper.params=null",
        "optimizer.lr=choice(1e-7)",
        "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.lower=0.5",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no trial completed (1 pruned, 0 failed): the study has no best trial" in done.stdout + done.stderr
    [child] = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
    assert child.data.tags["optuna.trial_state"] == "PRUNED", "lr=1e-7 stays under 50 % and the pruner stops it"
    run_id = child.info.run_id
    resumed = run_cli(
        "explab-train",
        f"resume={run_id}",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = f"run {run_id} is trial 0 of study digits_cnn_optuna, PRUNED there: the study keeps the trial as it ended"
    assert said in resumed.stdout + resumed.stderr
    run = MlflowClient(tracking_uri_for(tmp_path / "mlruns")).get_run(run_id)
    assert run.info.status == "FINISHED" and "explab.status_reason" not in run.data.tags
    assert run.data.tags["explab.resumed_after"] == "KILLED: TrialPruned: pruned after epoch 0 on val/acc_best"
    assert load(tmp_path, "digits_cnn_optuna", "mlruns/optuna/digits_cnn.journal").trials[0].state == TrialState.PRUNED


@pytest.mark.slow
def test_a_job_validating_within_epochs_reports_each_validation(tmp_path: Path) -> None:
    """Reported at their epoch, the second validation of each epoch repeated a step: Optuna kept the first
    value and dropped the rest, so a one-epoch fit on a large data set gave its pruner one value."""
    done = explab_sweep(tmp_path, "hydra.sweeper.n_trials=1", "trainer.max_epochs=2", "+trainer.val_check_interval=0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    [trial] = load(tmp_path, "digits_cnn_optuna", "mlruns/optuna/digits_cnn.journal").trials
    [child] = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
    logged = MlflowClient(tracking_uri_for(tmp_path / "mlruns")).get_metric_history(child.info.run_id, "val/acc_best")
    assert len(trial.intermediate_values) == len(logged) == 4
    reported = [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]
    assert reported == pytest.approx([m.value for m in sorted(logged, key=lambda m: m.step)])


def test_a_direction_against_the_metric_fails_before_the_study_exists(tmp_path: Path) -> None:
    """Maximising val/loss ran the whole sweep and crowned its worst trial. (Without a direction, the search
    configs' ``auto`` follows the metric's name.)"""
    done = explab_sweep(tmp_path, "optimized_metric=val/loss", "hydra.sweeper.direction=maximize")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert (
        "Error: hydra.sweeper.direction=maximize would maximize val/loss, and by its name lower is better: "
        "set hydra.sweeper.direction=minimize"
    ) in done.stderr
    assert not (tmp_path / "mlruns" / "optuna").exists(), "no study"
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == []


@pytest.mark.slow
def test_a_search_space_typo_fails_before_the_study_exists_and_the_fixed_command_runs(tmp_path: Path) -> None:
    """A mistyped key once failed every trial and left a study whose definition held it, so the corrected
    command was refused as "another sweep definition" until the study was renamed."""
    common = ["hydra.sweeper.n_trials=1", "trainer.max_epochs=1", "hydra.sweeper.params=null"]
    typo = explab_sweep(tmp_path, *common, "optimizer.lrr=interval(0.001, 0.01)")
    assert typo.returncode == 1 and "Traceback" not in typo.stderr, typo.stderr[-2000:]
    assert "Error: the search space sets optimizer.lrr" in typo.stderr and "Did you mean: optimizer.lr?" in typo.stderr
    assert not (tmp_path / "mlruns" / "optuna").exists(), "no study"
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == []
    fixed = explab_sweep(tmp_path, *common, "optimizer.lr=interval(0.001, 0.01)")
    assert fixed.returncode == 0, fixed.stderr[-2000:]


@pytest.mark.slow
def test_explab_sweep_records_parent_and_children_and_prunes(tmp_path: Path, compose_cfg) -> None:
    done = explab_sweep(
        tmp_path,
        "hydra.sweeper.n_trials=3",
        "trainer.max_epochs=3",
        "hydra.sweeper.params=null",
        "optimizer.lr=choice(3e-3,1e-7)",
        "model.backbone.depth=range(1,3)",
        "hydra/sweeper/sampler=grid",
        "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.lower=0.5",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    parents = [r for r in runs if r.data.tags.get("explab.sweep") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    # the grid has 4 points and n_trials=3: at least one of the three runs has lr=1e-7
    assert len(children) == 3
    by_state = {r.data.tags["optuna.trial_state"]: r for r in children}
    assert "PRUNED" in by_state, "lr=1e-7 stays under 50% accuracy and the threshold pruner stops it"
    pruned = [r for r in children if r.data.tags["optuna.trial_state"] == "PRUNED"]
    assert all(r.info.status == "KILLED" and r.data.params["optimizer.lr"] == "1e-07" for r in pruned)
    # pruning is how a search works, not an error: no error line for it, no traceback on its run
    output = done.stdout + done.stderr
    assert "Error executing job" not in output and "][ERROR]" not in output, output[-3000:]
    assert all(r.data.tags["explab.status_reason"].startswith("TrialPruned: pruned after epoch") for r in pruned)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert all(not client.list_artifacts(r.info.run_id, "error.txt") for r in pruned)
    complete = [r for r in children if r.data.tags["optuna.trial_state"] == "COMPLETE"]
    assert complete and all(r.info.status == "FINISHED" for r in complete)
    assert sorted(r.data.tags["optuna.trial_number"] for r in children) == ["0", "1", "2"]
    assert {r.info.run_name for r in children} == {"trial-0", "trial-1", "trial-2"}
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["optuna.sampler"] == "GridSampler"
    assert parent.data.tags["optuna.pruner"] == "ThresholdPruner"
    assert parent.data.metrics["best_value"] == max(r.data.metrics["val/acc_best"] for r in complete)
    # the summary names the best trial's run, the one reproduce= takes, and how to get what the trials skipped
    best = next(r for r in complete if r.data.metrics["val/acc_best"] == parent.data.metrics["best_value"])
    trial, run_id = best.data.tags["optuna.trial_number"], best.info.run_id
    assert f"Best trial {trial} (MLflow run {run_id}): val/acc_best = " in output
    assert f"explab-train reproduce={run_id} log_model=true log_plots=true" in output
    [results] = (tmp_path / "logs").rglob("optimization_results.yaml")
    assert yaml.safe_load(results.read_text())["best_run_id"] == run_id
    # the parent run trained nothing: resuming, reproducing or testing it is refused, naming the best trial's
    for mode in ("resume", "reproduce"):
        with pytest.raises(UsageError, match=rf"parent run of the sweep 'digits_cnn_optuna'.*\(the best: {run_id}\)"):
            config_from_recorded_run(compose_cfg(f"{mode}={parent.info.run_id}"))
    with pytest.raises(UsageError, match=rf"\(the best: {run_id}\)"):
        _fetch_best_checkpoint(
            f"sqlite:///{tmp_path}/mlruns/mlflow.db", parent.info.run_id, str(tmp_path), str(tmp_path / "logs")
        )
    # jobs that reopen the study from its storage (on SLURM nodes) read the rule from here
    study = optuna.load_study(
        study_name="digits_cnn_optuna", storage=open_storage(f"journal:///{tmp_path}/mlruns/optuna/digits_cnn.journal")
    )
    assert study.user_attrs[PRUNER_ATTR] == {
        "_target_": "optuna.pruners.ThresholdPruner",
        "lower": 0.5,
        "upper": None,
        "n_warmup_steps": 0,
    }
    # trials keep their checkpoint but skip the figures and the MLflow model (they cost time per trial)
    trial_artifacts = {a.path for a in client.list_artifacts(complete[0].info.run_id)}
    assert "checkpoints" in trial_artifacts and not {"plots", "model"} & trial_artifacts
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/best_params.yaml", "sweep/trials.csv", "sweep/plots"} <= artifacts
    plots = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(parent.info.run_id, "sweep/plots")}
    assert "optimization_history.png" in plots


@pytest.mark.slow
def test_diverging_trial_is_fail_in_optuna_and_failed_in_mlflow(tmp_path: Path) -> None:
    done = explab_sweep(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=1",
        "hydra.sweeper.params=null",
        "optimizer=sgd",
        "optimizer.lr=choice(1e12,3e-3)",
        "hydra/sweeper/pruner=none",
        "hydra/sweeper/sampler=grid",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    open_storage.cache_clear()
    study = optuna.load_study(
        study_name="digits_cnn_optuna", storage=open_storage(f"journal:///{tmp_path}/mlruns/optuna/digits_cnn.journal")
    )
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"], "the grid's two points, once each"
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed[0].params["optimizer.lr"] == 1e12
    assert "training loss became" in failed[0].user_attrs["explab.error"]
    runs = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
    statuses = {r.data.tags["optuna.trial_number"]: r.info.status for r in runs}
    for trial in failed:
        assert statuses[str(trial.number)] == "FAILED"


@pytest.mark.slow
def test_two_explab_workers_give_n_trials_child_runs(tmp_path: Path) -> None:
    args = [
        str(BIN / "explab-train"),
        "-m",
        "hparams_search=digits_optuna",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs",
        "hydra.sweeper.n_trials=4",
        "trainer.max_epochs=1",
        "hydra.sweeper.sampler.seed=null",
        "torch_threads=1",
    ]
    workers = [
        subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[1][-2000:] for o in outputs]
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    children = [r for r in runs if "optuna.trial_number" in r.data.tags]
    complete = [r for r in children if r.data.tags.get("optuna.trial_state") == "COMPLETE"]
    assert len(complete) == 4
    assert len({r.data.tags["optuna.trial_number"] for r in complete}) == 4
    parents = {r.data.tags.get("mlflow.parentRunId") for r in children}
    assert len(parents) == 1


def test_ctrl_c_leaves_no_trial_running(tmp_path: Path) -> None:
    import signal
    import time

    worker = subprocess.Popen(
        plain_app_command(
            tmp_path, "interrupted", "hydra.sweeper.n_trials=3", "sleep=10", f"hydra.sweep.dir={tmp_path}/multirun"
        ),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    # a trial sleeps 10 s, so the Ctrl-C lands inside one even when the suite's other process slows this one
    deadline, running = time.monotonic() + 120, False
    while time.monotonic() < deadline and not running and worker.poll() is None:
        if (study := load_once_written(tmp_path, "interrupted")) is not None:
            running = any(t.state == TrialState.RUNNING for t in study.trials)
        time.sleep(0.2)
    assert running, f"no trial was seen running (sweep exit code {worker.poll()})"
    worker.send_signal(signal.SIGINT)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode != 0, stderr[-3000:]
    study = load(tmp_path, "interrupted")
    assert study.trials, "the sweep had started a trial"
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert study.trials[-1].state == TrialState.FAIL


@pytest.mark.slow
def test_seeds_run_in_parallel_as_a_grid_once_the_sweep_names_its_metric(tmp_path: Path) -> None:
    """Every trial used to train and then fail ("the job returned several metrics"); the advice is the fix."""
    common = [
        "-m", "hydra/sweeper=explab_optuna", "hydra/sweeper/sampler=grid", "seed=choice(1,2)", "trainer.max_epochs=1",
        f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs", "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    refused = run_cli("explab-train", *common, cwd=tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert (
        "the sweep names no metric to optimise, and each job returns every metric its run logs: set "
        "hydra.sweeper.metric and its direction (hydra.sweeper.metric=val/acc_best hydra.sweeper.direction=maximize"
    ) in refused.stderr
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == []
    done = run_cli(
        "explab-train", *common, "hydra.sweeper.n_jobs=2", "hydra.sweeper.metric=val/acc_best",
        "hydra.sweeper.direction=maximize", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # a grid is a plain multirun run two at a time: not warned that it keeps no study, as a search is
    assert "hparams_search=optuna sets both" not in done.stdout, done.stdout[-3000:]
    assert "luckiest seed" not in done.stdout + done.stderr, "every seed runs: none is chosen"
    trials = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
    assert sorted(r.data.params["seed"] for r in trials) == ["1", "2"], "each grid point once"
    assert len(group_runs(trials)) == 1, "one configuration over two seeds, as a plain multirun's"


def test_workers_asked_of_a_plain_multirun_are_answered_with_the_grid_that_runs_them(tmp_path: Path) -> None:
    done = run_cli("explab-train", "-m", "seed=1,2", "hydra.sweeper.n_jobs=2", cwd=tmp_path)
    assert done.returncode == 1
    assert "hydra.sweeper.n_jobs is a setting of explab's Optuna sweeper" in done.stderr, done.stderr[-2000:]
    assert "-m hydra/sweeper=explab_optuna hydra/sweeper/sampler=grid 'seed=choice(1,2,3)'" in done.stderr


def test_a_search_without_hparams_search_says_it_keeps_no_study_and_no_parent_run(tmp_path: Path) -> None:
    done = run_cli(
        "explab-train", "-m", "hydra/sweeper=explab_optuna", "optimizer.lr=interval(1e-3, 1e-2)",
        "hydra.sweeper.n_trials=1", "hydra.sweeper.metric=val/acc_best", "hydra.sweeper.direction=auto",
        "trainer.max_epochs=1", f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        "hydra.sweeper.storage is unset: the study is this command's own, and running it again starts anew; "
        "hydra.sweeper.mlflow is unset: no MLflow parent run records the study (hparams_search=optuna sets both "
        "for any experiment)"
    ) in done.stdout, done.stdout[-3000:]
    [trial] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert "explab.sweep" not in trial.data.tags and trial.info.status == "FINISHED"


@pytest.mark.slow
def test_any_experiment_is_searched_with_hparams_search_optuna_in_the_direction_its_metric_says(tmp_path: Path) -> None:
    """``hydra/sweeper=explab_optuna`` alone kept its study in memory and made no MLflow parent run; a regression
    experiment's search needed its direction spelt out."""
    common = [
        "-m", "experiment=diabetes_mlp", "hparams_search=optuna", "optimizer.lr=tag(log, interval(1e-4, 1e-2))",
        "trainer.max_epochs=2", f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs",
    ]  # fmt: skip
    first = run_cli("explab-train", *common, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_cli("explab-train", *common, "hydra.sweeper.n_trials=3", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    study = load(tmp_path, "diabetes_mlp_optuna", "mlruns/optuna/diabetes_mlp.journal")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE, "val/mse_best: lower is better"
    assert states(study) == ["COMPLETE"] * 3, "the same command resumed the study"
    runs = runs_in(tmp_path / "mlruns", "diabetes_mlp")
    [parent] = [r for r in runs if r.data.tags.get("explab.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["optuna.trial_number"] for r in children) == ["0", "1", "2"]
    assert {r.data.params["log_model"] for r in children} == {"False"}, "trials log no model, as every search's"


@pytest.mark.slow
def test_the_mnist_search_runs_on_the_mnist_recipe_that_keeps_no_validation_split(tmp_path: Path) -> None:
    """mnist_cnn trains on every training image, as Keras does; its search ranks trials on a validation split
    of its own. Without one it was refused: val/acc_best is never logged."""
    mnist = write_mnist(tmp_path / "mnist", n_train=5100)  # the search's validation split is 5,000 images
    done = run_cli(
        "explab-train",
        "-m",
        "hparams_search=mnist_optuna",  # mnist_cnn's search, and mnist_cnn where no experiment is named
        f"data.data_dir={mnist}",
        "hydra.sweeper.n_trials=1",
        "trainer=limit_batches",
        "trainer.max_epochs=1",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [trial] = [r for r in runs_in(tmp_path / "mlruns", "mnist_cnn") if "explab.sweep" not in r.data.tags]
    assert trial.info.status == "FINISHED" and "val/acc_best" in trial.data.metrics
    assert trial.data.params["data.val_size"] == "5000"
