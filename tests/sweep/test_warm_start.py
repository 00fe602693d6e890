"""Warm starts from earlier studies and MLflow runs, and queued points, through real ``-m`` subprocesses."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from explab.errors import UsageError
from explab.sweep import WARM_START_ATTR
from explab.sweep.objectives import Objectives
from explab.sweep.space import Condition
from explab.sweep.storage import open_storage
from explab.sweep.study_record import RECORD_ATTR
from explab.sweep.warm_start import add_warm_start, check_sources, configured_values, placed
from tests.conftest import runs_in, tracking_uri_for
from tests.sweep.test_sweeper import explab_sweep, load, sweep_plain_app


def trained(study) -> list:
    return [t for t in study.trials if WARM_START_ATTR not in t.user_attrs]


@pytest.mark.slow
def test_a_wider_search_learns_from_an_earlier_study_once_and_runs_queued_points_first(tmp_path: Path) -> None:
    record = f"record={tmp_path}/ran.txt"  # a line per job the app runs
    first = sweep_plain_app(
        tmp_path, "hydra.sweeper.n_trials=6", "y=range(0, 3)", "hydra.sweeper.sampler.seed=1", record, study="first"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    earlier = load(tmp_path, "first").trials
    inside = [t for t in earlier if t.params["y"] < 2]  # the new space drops y=2
    assert 0 < len(inside) < 6, "seed 1 draws both kinds of point"
    source = f"[{{storage: 'journal:///{tmp_path}/optuna.journal', study_name: first}}]"
    args = (
        "hydra.sweeper.n_trials=3",
        "x=interval(-8.0, 8.0)",
        "y=range(0, 2)",
        f"hydra.sweeper.warm_start={source}",
        "hydra.sweeper.enqueue=[{x: 2.0, y: 0}]",
        record,
    )
    for _ in range(2):  # the second command resumes: nothing is added or queued twice
        second = sweep_plain_app(tmp_path, *args, study="second")
        assert second.returncode == 0, second.stderr[-3000:]
    assert f"trials added, {6 - len(inside)} skipped" not in second.stdout + second.stderr, "added once"
    study = load(tmp_path, "second")
    warm = [t for t in study.trials if WARM_START_ATTR in t.user_attrs]
    assert sorted((t.params["x"], t.params["y"], t.value) for t in warm) == sorted(
        (t.params["x"], t.params["y"], t.value) for t in inside
    )
    assert all(t.user_attrs[WARM_START_ATTR].startswith("study first trial ") for t in warm)
    runs = trained(study)
    assert len(runs) == 3 and all(t.state.name == "COMPLETE" for t in runs), "warm starts do not count as trials"
    assert runs[0].params == {"x": 2.0, "y": 0} and runs[0].value == 0.0, "the queued point runs first"
    ran = (tmp_path / "ran.txt").read_text().splitlines()
    assert len(ran) == 6 + 3, "only the trials of the two searches ran their job"


def test_a_warm_start_source_that_does_not_exist_is_refused_before_any_trial(tmp_path: Path) -> None:
    done = sweep_plain_app(
        tmp_path, f"hydra.sweeper.warm_start=[{{storage: 'journal:///{tmp_path}/nowhere.journal', study_name: a}}]"
    )
    assert done.returncode != 0
    assert "nowhere.journal does not exist" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "nowhere.journal").exists()
    assert not (tmp_path / "multirun").exists() or not list((tmp_path / "multirun").glob("*/.hydra"))
    # the researcher drops the source and changes a setting: the study the refusal left has no trial to compare
    fixed = sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=1", "y=1")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert len(load(tmp_path, "plain").trials) == 1


@pytest.mark.parametrize(
    ("source", "refusal"),
    [
        (
            "{mlflow: earlier}",
            "warm start from MLflow experiment 'earlier': this sweep records no MLflow runs, so give",
        ),
        ("{mlflow: earlier, tracking_uri: 'sqlite:///TMP/typo/mlflow.db'}", "There is no MLflow store at TMP/typo"),
    ],
)
def test_a_warm_start_from_a_store_that_is_not_there_is_refused(tmp_path: Path, source: str, refusal: str) -> None:
    """Without a store named (in a sweep that records no MLflow runs), the sweep failed in a traceback; a
    mistyped store was created empty, its folder with it, and the search said the experiment did not exist."""
    source = source.replace("TMP", str(tmp_path))
    done = sweep_plain_app(tmp_path, "hydra.sweeper.metric=value", f"hydra.sweeper.warm_start=[{source}]")
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert refusal.replace("TMP", str(tmp_path)) in done.stderr
    assert not (tmp_path / "typo").exists() and not (tmp_path / "ran.txt").exists()


def test_a_warm_start_from_a_deleted_experiment_names_the_restore_command(tmp_path: Path) -> None:
    """Its runs went to the MLflow trash with it: the search started cold, saying it had added 0 trials."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("earlier", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "x", "1.0")
    client.log_metric(run.info.run_id, "value", 1.0)
    client.set_terminated(run.info.run_id, "FINISHED")
    client.delete_experiment(experiment)
    done = sweep_plain_app(
        tmp_path,
        "hydra.sweeper.metric=value",
        "hydra.sweeper.warm_start=[{mlflow: earlier}]",
        f"hydra.sweeper.mlflow={{tracking_uri: '{uri}', experiment_name: later}}",
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"experiment 'earlier' is deleted (in the MLflow trash of {uri}): restore it with" in done.stderr
    assert f"mlflow experiments restore --experiment-id {experiment}" in done.stderr
    assert not (tmp_path / "ran.txt").exists(), "no trial ran"


@pytest.mark.slow
def test_finished_mlflow_runs_inside_the_space_become_trials(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("earlier", artifact_location=str(tmp_path / "artifacts"))
    for x, status in [(1.0, "FINISHED"), (3.0, "FINISHED"), (9.0, "FINISHED"), (2.0, "FAILED"), (1.5, "FINISHED")]:
        run = client.create_run(experiment)
        client.log_param(run.info.run_id, "x", str(x))
        client.log_param(run.info.run_id, "y", "0")
        client.log_metric(run.info.run_id, "value", (x - 2.0) ** 2)
        if x == 1.5:  # resumed at another y: its value is no point's
            client.set_tag(run.info.run_id, "explab.resumed_with", "y=1 (was 0)")
        client.set_terminated(run.info.run_id, status)
    done = sweep_plain_app(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.metric=value",
        "hydra.sweeper.warm_start=[{mlflow: earlier}]",  # in the sweep's own store
        f"hydra.sweeper.mlflow={{tracking_uri: '{uri}', experiment_name: later}}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path, "plain")
    warm = sorted((t.params["x"], t.value) for t in study.trials if WARM_START_ATTR in t.user_attrs)
    assert warm == [(1.0, 1.0), (3.0, 1.0)], "x=9 lies outside interval(-4, 4); the FAILED and resumed runs no result"
    assert len(trained(study)) == 2
    [parent] = [
        r
        for r in client.search_runs([client.get_experiment_by_name("later").experiment_id])
        if r.data.tags.get("explab.sweep") == "parent"
    ]
    assert parent.data.tags["explab.warm_start"] == f"MLflow experiment earlier ({uri}): 2 added, 1 outside the space"


def test_an_enqueued_point_outside_the_space_is_refused_before_any_trial(tmp_path: Path) -> None:
    done = sweep_plain_app(tmp_path, "hydra.sweeper.enqueue=[{x: 9.0}]")
    assert done.returncode != 0
    assert "hydra.sweeper.enqueue: {'x': 9.0} does not fall inside the search space at x" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_source_gives_its_complete_and_pruned_trials_inside_the_space_once(tmp_path: Path) -> None:
    url = f"journal:///{tmp_path}/source.journal"
    source = optuna.create_study(study_name="source", storage=open_storage(url), direction="maximize")
    narrow, wide = {"x": FloatDistribution(0, 1)}, {"x": FloatDistribution(0, 3)}
    source.add_trial(create_trial(params={"x": 0.5}, distributions=narrow, value=0.9, intermediate_values={0: 0.9}))
    source.add_trial(
        create_trial(state=TrialState.PRUNED, params={"x": 0.1}, distributions=narrow, intermediate_values={0: 0.2})
    )
    source.add_trial(create_trial(params={"x": 2.0}, distributions=wide, value=0.95))  # outside the new space
    study = optuna.create_study(direction="maximize")
    objectives = Objectives.from_settings("maximize", None)
    for _ in range(2):  # a resumed sweep adds nothing twice
        lines = add_warm_start(study, [{"storage": url, "study_name": "source"}], narrow, {}, objectives)
    assert lines == [f"study source ({url}): 2 added, 1 outside the space"]
    added = {t.params["x"]: t for t in study.trials}
    assert set(added) == {0.5, 0.1}
    assert added[0.5].state == TrialState.COMPLETE and added[0.5].value == 0.9
    # a pruned trial stays pruned: the sampler ranks it with the bad ones, the pruner sees its epochs
    assert added[0.1].state == TrialState.PRUNED and added[0.1].intermediate_values == {0: 0.2}


def test_a_widened_space_places_earlier_trials_at_the_values_their_config_gave_what_they_did_not_search(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A search that adds a dimension (depth) to an earlier one (lr only) skipped every earlier trial as
    "outside the space": they lacked depth, yet had all run at the config's depth."""
    url = f"journal:///{tmp_path}/source.journal"
    lr = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}
    source = optuna.create_study(study_name="source", storage=open_storage(url), direction="maximize")
    source.set_user_attr(RECORD_ATTR, {"fixed": ["experiment=digits_cnn", "paths.root_dir=/elsewhere", "seed=7"]})
    source.add_trial(create_trial(params={"lr": 1e-3}, distributions=lr, value=0.9))
    wide = {**lr, "depth": IntDistribution(1, 3)}
    study = optuna.create_study(direction="maximize")
    with caplog.at_level("WARNING"):
        lines = add_warm_start(
            study, [{"storage": url, "study_name": "source"}], wide, {}, Objectives.from_settings("maximize", None),
            configured={"depth": 2, "lr": 3e-3}, fixed=["experiment=digits_cnn", "trainer.max_epochs=3"],
        )  # fmt: skip
    assert lines == [f"study source ({url}): 1 added, 0 outside the space"]
    [trial] = study.trials
    assert trial.params == {"lr": 1e-3, "depth": 2} and trial.value == 0.9, "its own lr, the config's depth"
    # where it ran (paths.*) is no difference; what its trials computed with is
    assert "other fixed overrides (seed=7 there only, trainer.max_epochs=3 here only)" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize(("fixed", "y"), [((), 0), (("y=1",), 1)])  # the config's y, or the earlier command's
def test_a_search_that_adds_a_dimension_learns_from_the_earlier_one(tmp_path: Path, fixed: tuple, y: int) -> None:
    first = sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=2", *fixed, study="first")  # x only
    assert first.returncode == 0, first.stderr[-3000:]
    source = f"[{{storage: 'journal:///{tmp_path}/optuna.journal', study_name: first}}]"
    second = sweep_plain_app(
        tmp_path, "hydra.sweeper.n_trials=1", "y=range(0, 3)", f"hydra.sweeper.warm_start={source}", study="second"
    )
    assert second.returncode == 0, second.stderr[-3000:]
    earlier = {t.params["x"]: t.value for t in load(tmp_path, "first").trials}
    warm = [t for t in load(tmp_path, "second").trials if WARM_START_ATTR in t.user_attrs]
    assert {t.params["x"]: (t.params["y"], t.value) for t in warm} == {x: (y, v) for x, v in earlier.items()}


def test_configured_values_name_group_options_and_read_keys(compose_cfg) -> None:
    cfg = compose_cfg("optimizer=sgd", "model.backbone.depth=3")
    names = ["optimizer", "optimizer.momentum", "model.backbone.depth", "trainer", "optimizer.nope"]
    assert configured_values(cfg, names) == {
        "optimizer": "sgd",  # the option's name, as a search space chooses it
        "optimizer.momentum": cfg.optimizer.momentum,
        "model.backbone.depth": 3,
        "trainer": "default",
    }, "a key the config lacks is left out"


@pytest.mark.parametrize(
    ("params", "unsearched", "expected"),
    [
        # a fixed override's string, drawn as an int
        ({"lr": 0.1}, {"depth": "2", "opt": "adam"}, {"lr": 0.1, "depth": 2, "opt": "adam"}),
        ({"lr": 0.1}, {"depth": 5, "opt": "adam"}, None),  # the config's depth lies outside the new space
        ({"lr": 0.1, "depth": 3, "opt": "sgd"}, {"depth": 2}, None),  # the condition holds, momentum is missing
        ({"lr": 0.1, "depth": 3}, {"depth": 2, "opt": "adam"}, {"lr": 0.1, "depth": 3, "opt": "adam"}),  # drawn wins
        # a conditional parameter is given where its condition holds, also on a parameter given so
        (
            {"lr": 0.1},
            {"depth": 2, "opt": "sgd", "momentum": 0.9},
            {"lr": 0.1, "depth": 2, "opt": "sgd", "momentum": 0.9},
        ),
        ({"lr": 0.1}, {"depth": 2, "opt": "adam", "momentum": 0.9}, {"lr": 0.1, "depth": 2, "opt": "adam"}),
    ],
)
def test_placed_gives_a_parameter_the_trial_lacks_its_configured_value(params, unsearched, expected) -> None:
    space = {
        "lr": FloatDistribution(1e-3, 1.0),
        "depth": IntDistribution(1, 3),
        "opt": CategoricalDistribution(["adam", "sgd"]),
        "momentum": FloatDistribution(0.5, 0.99),
    }
    conditions = {"momentum": Condition({"opt": ("sgd",)})}
    assert placed(params, space, conditions, unsearched) == expected
    assert placed(params, space, conditions) is None, "without the config's values the trial lacks depth"


def test_a_source_that_cannot_be_read_adds_nothing_from_the_others(tmp_path: Path) -> None:
    url = f"journal:///{tmp_path}/source.journal"
    space = {"x": FloatDistribution(0, 1)}
    source = optuna.create_study(study_name="source", storage=open_storage(url), direction="maximize")
    source.add_trial(create_trial(params={"x": 0.5}, distributions=space, value=0.9))
    study = optuna.create_study(direction="maximize")
    sources = [{"storage": url, "study_name": "source"}, {"storage": url, "study_name": "missing"}]
    with pytest.raises(UsageError, match=r"no study 'missing'.*studies there: source"):
        add_warm_start(study, sources, space, {}, Objectives.from_settings("maximize", None))
    assert study.trials == [], "the readable source's point waits until every source can be read"


@pytest.mark.parametrize(
    ("source", "direction", "metric", "refusal"),
    [
        ("study", "maximize", "val/f1", r"study 'source' optimised score, this sweep val/f1; its values would mean"),
        ("study", "minimize", "score", r"study 'source' was maximize, this sweep is minimize$"),
        ("mlflow", "maximize", "val/acc", r"no MLflow experiment 'nope' in sqlite:///"),
        ("mlflow", "maximize", None, r"reads the metrics named by hydra.sweeper.metric; set it"),
    ],
)
def test_a_source_whose_values_would_mean_something_else_is_refused(
    tmp_path: Path, source: str, direction: str, metric: str | None, refusal: str
) -> None:
    """An earlier study of another metric or direction, or an experiment the store lacks, adds nothing."""
    url = f"journal:///{tmp_path}/source.journal"
    space = {"x": FloatDistribution(0, 1)}
    earlier = optuna.create_study(study_name="source", storage=open_storage(url), direction="maximize")
    earlier.set_user_attr(RECORD_ATTR, {"metric": "score"})
    earlier.add_trial(create_trial(params={"x": 0.5}, distributions=space, value=0.9))
    sources = [{"storage": url, "study_name": "source"}]
    if source == "mlflow":
        uri = tracking_uri_for(tmp_path / "mlruns")
        MlflowClient(uri).search_experiments()  # the store exists, without the experiment
        sources = [{"mlflow": "nope", "tracking_uri": uri}]
    study = optuna.create_study(direction=direction)
    with pytest.raises(UsageError, match=refusal):
        add_warm_start(study, sources, space, {}, Objectives.from_settings(direction, metric))
    assert study.trials == []


@pytest.mark.parametrize("entry", [{"study_name": "a"}, {"storage": "", "study_name": "a"}, {"mlflow": ""}, {}])
def test_a_warm_start_entry_that_names_no_source_is_refused(entry: dict) -> None:
    with pytest.raises(UsageError, match=r"give \{storage: URL, study_name: NAME\} or \{mlflow: EXPERIMENT"):
        check_sources([entry])


@pytest.mark.slow
def test_explab_runs_warm_start_a_search_over_config_group_options(tmp_path: Path) -> None:
    """The params hold what a group's option built (optimizer._target_), not its name: every earlier run of a
    search over `optimizer` fell outside the space. Runs name their options in explab.choice.* tags; a run
    recorded before those is read by its class."""
    earlier = explab_sweep(tmp_path, "hydra.sweeper.n_trials=3", "trainer.max_epochs=1")
    assert earlier.returncode == 0, earlier.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "explab.sweep" not in r.data.tags]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert finished and all(r.data.tags["explab.choice.optimizer"] in ("adam", "adamw", "rmsprop") for r in runs)
    for key in [k for k in finished[0].data.tags if k.startswith("explab.choice.")]:
        client.delete_tag(finished[0].info.run_id, key)  # as an earlier explab recorded it
    later = explab_sweep(
        tmp_path,
        "hydra.sweeper.study_name=later",
        "hydra.sweeper.n_trials=1",
        "trainer.max_epochs=1",
        "hydra.sweeper.warm_start=[{mlflow: digits_cnn}]",
    )
    assert later.returncode == 0, later.stderr[-3000:]
    assert f"{len(finished)} trials added, 0 skipped" in later.stdout, later.stdout[-3000:]
    # each run comes in with the option its trial drew, the untagged one's read from its class
    source = load(tmp_path, "digits_cnn_optuna", "mlruns/optuna/digits_cnn.journal")
    drawn = sorted((t.params["optimizer"], t.value) for t in source.trials if t.state == TrialState.COMPLETE)
    study = load(tmp_path, "later", "mlruns/optuna/digits_cnn.journal")
    assert sorted((t.params["optimizer"], t.value) for t in study.trials if WARM_START_ATTR in t.user_attrs) == drawn
