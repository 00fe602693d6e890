"""explab-report: a seed report of every configuration of an experiment."""

from __future__ import annotations

import csv
import logging
import re
import statistics
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest
from scipy import stats
from torch import nn
from torch.optim import SGD

from explab.errors import UsageError
from explab.models.tasks import ClassificationTask, RegressionTask, TaskModule
from explab.report import HEADLINE_METRICS, report
from explab.reproduce import config_from_recorded_run
from explab.tracking.environment import git_state
from explab.train import train
from tests.conftest import run_cli, runs_in, tracking_uri_for
from tests.support.resumed import two_seeds_one_resumed_to_two_epochs


def test_report_groups_runs_by_config_minus_seed(compose_cfg, store: Path) -> None:
    results = {}
    for lr in ("0.003", "0.0003"):
        for seed in (1, 2):
            metrics = train(
                compose_cfg(
                    f"optimizer.lr={lr}", f"seed={seed}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"
                )
            )
            results.setdefault(lr, []).append(metrics["test/acc"])
    # one process, as a multirun's jobs: MLflow drew names from the generator each job seeds, and repeated them
    names = [r.info.run_name for r in runs_in(store, "digits_cnn")]
    assert len(set(names)) == len(names) == 4, names
    markdown = report(compose_cfg("experiment_name=digits_cnn", "metrics=[test/acc]", config_name="report"))
    for lr, values in results.items():
        expected = f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"
        line = next(line for line in markdown.splitlines() if f"optimizer.lr={lr} " in line + " ")
        assert f"| 2 | {expected} |" in line, line
    [report_run] = [r for r in runs_in(store, "digits_cnn") if r.data.tags.get("explab.report") == "true"]
    client = mlflow.tracking.MlflowClient(tracking_uri_for(store))
    assert {a.path for a in client.list_artifacts(report_run.info.run_id, "report")} == {
        "report/report.md",
        "report/report.csv",
        "report/intervals.png",
    }
    with pytest.raises(UsageError, match="is a report of explab-report, which trains nothing: give a run it compares"):
        config_from_recorded_run(compose_cfg(f"reproduce={report_run.info.run_id}"))


def test_a_seed_run_again_counts_once_and_what_a_run_only_records_sets_no_configuration_apart(
    compose_cfg, store: Path
) -> None:
    """A reproduction (here of seed 1, with the model logged as a sweep's winner gets it) is no new sample: as a
    second value it would make n 3 and narrow the interval with a seed already counted."""
    common = ("trainer.max_epochs=1", "trainer.enable_progress_bar=false")
    first, second = (train(compose_cfg(*common, f"seed={seed}"))["test/acc"] for seed in (1, 2))
    again = train(compose_cfg(*common, "seed=1", "log_model=true", "log_plots=false"))["test/acc"]
    markdown = report(compose_cfg("experiment_name=digits_cnn", "metrics=[test/acc]", config_name="report"))
    [row] = [line for line in markdown.splitlines() if line.startswith("| all |")]
    mean = statistics.fmean([(first + again) / 2, second])
    assert row.startswith(f"| all | 2 | {mean:.4f} ± "), markdown
    assert "1 run repeats a seed of its configuration (a reproduction or a rerun): each seed counts once" in markdown


def test_a_run_resumed_with_other_settings_is_a_configuration_of_its_own(compose_cfg, store: Path) -> None:
    """MLflow keeps a run's params as first logged: a seed resumed from one epoch to two was counted as one more
    one-epoch seed, its two-epoch accuracy averaged in, and a baseline named by the params took it."""
    two_seeds_one_resumed_to_two_epochs(compose_cfg, store)
    markdown = report(compose_cfg("experiment_name=digits_cnn", "metrics=[val/acc_best]", config_name="report"))
    rows = [line.split(" | ")[:2] for line in markdown.splitlines() if line.startswith("| trainer.")]
    assert rows == [["| trainer.max_epochs=1", "1"], ["| trainer.max_epochs=2 (resumed from 1)", "1"]], markdown
    # a baseline named by the params is the run that trained them throughout
    against = report(
        compose_cfg(
            "experiment_name=digits_cnn",
            "metrics=[val/acc_best]",
            "baseline={trainer.max_epochs: 1}",
            config_name="report",
        )
    )
    assert "## Against the baseline (trainer.max_epochs=1)" in against, against


def test_a_report_without_metrics_shows_its_tasks_headline_metrics(compose_cfg, store: Path) -> None:
    """A regression's report asked for test/acc by default and stopped with an error."""
    for seed in (1, 2):
        train(compose_cfg("experiment=diabetes_mlp", f"seed={seed}", "trainer.max_epochs=1", "test=true"))
    markdown = report(compose_cfg("experiment_name=diabetes_mlp", config_name="report"))
    header = next(line for line in markdown.splitlines() if line.startswith("| configuration |"))
    metrics = ("test/mse", "test/r2", "val/mse_best")
    assert header == "| configuration | n | " + " | ".join(f"{m} | {m} 95% CI" for m in metrics) + " |"


def test_a_classifier_trained_without_validation_reports_its_headline_test_metrics(compose_cfg, store: Path) -> None:
    """mnist_cnn keeps no validation split: its report showed every test/ metric, loss and recall included."""
    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("keras_style", artifact_location=str(store / "artifacts"))
    for seed in (1, 2):
        run = client.create_run(experiment)
        client.log_param(run.info.run_id, "seed", seed)
        for name in ("test/acc", "test/f1", "test/loss", "test/recall", "train/loss"):
            client.log_metric(run.info.run_id, name, 0.9 + seed / 100)
        client.set_terminated(run.info.run_id, "FINISHED")
    markdown = report(compose_cfg("experiment_name=keras_style", f"tracking_uri={uri}", config_name="report"))
    header = next(line for line in markdown.splitlines() if line.startswith("| configuration |"))
    assert header == "| configuration | n | test/acc | test/acc 95% CI | test/f1 | test/f1 95% CI |"


@pytest.mark.parametrize("task", [ClassificationTask(nn.Identity(), 3, SGD), RegressionTask(nn.Identity(), SGD)])
def test_each_task_has_headline_metrics_it_logs(task: TaskModule) -> None:
    assert set(HEADLINE_METRICS[task.best_metric_name]) <= task.metric_names()


def test_report_of_unknown_experiment_names_the_known_ones(compose_cfg, store: Path) -> None:
    train(compose_cfg("trainer=fast_dev_run"))
    with pytest.raises(ValueError, match=r"no experiment 'nope'.*digits_cnn"):
        report(compose_cfg("experiment_name=nope", config_name="report"))


# Seed repeats of four configurations, written into a real store as a training job would leave them. The
# numbers are chosen so that one configuration is clearly better than the baseline, one is indistinguishable,
# one ran other seeds (so it is compared unpaired) and one ran a single seed.
BASELINE = {1: 0.900, 2: 0.910, 3: 0.905, 4: 0.915}
CLEARLY_BETTER = {1: 0.930, 2: 0.941, 3: 0.934, 4: 0.946}
INDISTINGUISHABLE = {1: 0.905, 2: 0.904, 3: 0.911, 4: 0.911}
OTHER_SEEDS = {5: 0.890, 6: 0.930, 7: 0.900}
ONE_SEED = {1: 0.950}
GROUPS = {"0.1": BASELINE, "0.2": CLEARLY_BETTER, "0.3": INDISTINGUISHABLE, "0.4": OTHER_SEEDS, "0.5": ONE_SEED}


@pytest.fixture
def seed_groups(store: Path) -> str:
    """The groups above as FINISHED runs of experiment ``groups``; returns its tracking URI."""
    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("groups", artifact_location=str(store / "artifacts"))
    for lr, values in GROUPS.items():
        for seed, value in values.items():
            run = client.create_run(experiment, run_name=f"lr{lr}-seed{seed}")
            for key, param in {"optimizer.lr": lr, "seed": seed, "model.name": "cnn"}.items():
                client.log_param(run.info.run_id, key, param)
            client.log_metric(run.info.run_id, "test/acc", value)
            client.log_metric(run.info.run_id, "test/loss", 1 - value)
            client.set_terminated(run.info.run_id, "FINISHED")
    return uri


def _recipe_runs(
    client, store: Path, experiment_name: str, values: dict[int, float], fingerprint: str, lr: str = "0.1"
) -> None:
    """Seed runs of one recipe, as explab-train leaves them: its experiment's name among the params."""
    experiment = client.get_experiment_by_name(experiment_name)
    # artifacts in the test's store: MLflow's default is ./mlruns of the working directory, the checkout's
    location = str(store / "artifacts")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name, location)
    for seed, value in values.items():
        run = client.create_run(experiment_id)
        params = {"experiment_name": experiment_name, "optimizer.lr": lr, "seed": seed}
        for key, param in params.items():
            client.log_param(run.info.run_id, key, param)
        client.set_tag(run.info.run_id, "data.fingerprint", fingerprint)
        client.log_metric(run.info.run_id, "test/acc", value)
        client.set_terminated(run.info.run_id, "FINISHED")


def test_recipes_of_several_experiments_are_reported_and_tested_together(compose_cfg, store: Path) -> None:
    """One experiment at a time could not tell whether one recipe beats another on the same data."""
    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    _recipe_runs(client, store, "text_rnn", BASELINE, "abc")
    _recipe_runs(client, store, "fasttext", CLEARLY_BETTER, "abc")
    _recipe_runs(client, store, "fasttext", INDISTINGUISHABLE, "abc", lr="0.2")
    markdown = report(
        compose_cfg(
            "experiment_name=[text_rnn,fasttext]",
            f"tracking_uri={uri}",
            "baseline={experiment_name:text_rnn}",
            config_name="report",
        )
    )
    assert markdown.startswith("# text_rnn vs fasttext: mean ± std over seeds"), markdown
    rows = [line.split(" | ")[0] for line in markdown.splitlines() if line.startswith("| ") and " | 4 | " in line]
    assert rows == ["| fasttext: optimizer.lr=0.1", "| fasttext: optimizer.lr=0.2", "| text_rnn"], markdown
    better = next(line for line in markdown.splitlines() if "| fasttext: optimizer.lr=0.1 | 4 vs 4 | paired t" in line)
    assert better.endswith("| better |"), better
    assert "different data" not in markdown
    [logged] = client.search_runs(
        [client.get_experiment_by_name("text_rnn").experiment_id], "tags.`explab.report` = 'true'"
    )
    assert logged.data.tags["explab.report.experiments"] == "text_rnn vs fasttext", "logged in the first"

    _recipe_runs(client, store, "other_data", ONE_SEED, "xyz")
    markdown = report(compose_cfg("experiment_name=[text_rnn,other_data]", f"tracking_uri={uri}", config_name="report"))
    assert "These runs trained on different data (data.fingerprint abc (4 runs), xyz (1 run))" in markdown
    with pytest.raises(UsageError, match="sweep=s is one experiment's sweep: give that experiment alone"):
        report(
            compose_cfg("experiment_name=[text_rnn,fasttext]", f"tracking_uri={uri}", "sweep=s", config_name="report")
        )


def test_runs_trained_from_different_code_are_named_under_the_table(compose_cfg, store: Path, tmp_path: Path) -> None:
    """Seeds trained before and after a change of code (a commit, an uncommitted edit, a library upgrade) were
    pooled as one configuration, their difference counted as seed noise, with nothing said."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (checkout / "model.py").write_text("width = 64\n")
    (checkout / "README.md").write_text("# the model\n")
    subprocess.run([*git, "add", "model.py", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "model"], check=True)
    (checkout / "README.md").write_text("# the model, 64 wide\n")  # prose: the same code trains
    states = [git_state(checkout)]
    assert states[0]["git.dirty"] == "true" and "git.diff_sha256" not in states[0]
    for width in (128, 256):  # two uncommitted edits of the code of the same commit
        (checkout / "model.py").write_text(f"width = {width}\n")
        states.append(git_state(checkout))
    assert states[1]["git.diff_sha256"] != states[2]["git.diff_sha256"]
    (checkout / "project").mkdir()  # a project in a folder of a larger repository: its code may sit beside it
    assert git_state(checkout / "project") == states[2]
    commit = states[0]["git.commit"][:7]

    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("edited", artifact_location=str(store / "artifacts"))
    tagged = [{**states[0], "version.torch": "2.13.0"}, {**states[0], "version.torch": "2.13.0"}]
    tagged += [{**states[1], "version.torch": "2.13.0"}, {**states[2], "version.torch": "2.14.0"}, {}]
    for seed, tags in enumerate(tagged, start=1):  # the last recorded outside a checkout: no commit to count
        run = client.create_run(experiment, tags=tags)
        client.log_param(run.info.run_id, "seed", seed)
        client.log_metric(run.info.run_id, "test/acc", 0.9 + seed / 100)
        client.set_terminated(run.info.run_id, "FINISHED")

    def reported(name: str, *only: str) -> str:
        return report(compose_cfg(f"experiment_name={name}", f"tracking_uri={uri}", *only, config_name="report"))

    edits = sorted(f"{commit} with uncommitted changes {state['git.diff_sha256']} (1 run)" for state in states[1:])
    said = f"git.commit {commit} (2 runs), {', '.join(edits)}; version.torch 2.13.0 (3 runs), 2.14.0 (1 run)"
    assert f"These runs trained from different code ({said}): where the change touched what trains" in reported(
        "edited"
    )
    same = client.create_experiment("unedited", artifact_location=str(store / "artifacts"))
    for seed in (1, 2):
        run = client.create_run(same, tags=states[0])
        client.log_param(run.info.run_id, "seed", seed)
        client.log_metric(run.info.run_id, "test/acc", 0.9)
        client.set_terminated(run.info.run_id, "FINISHED")
    assert "different code" not in reported("unedited")

    # the runs of one version alone, as the note says: one commit, and an MLflow filter for the rest
    # quoted as a user quotes a hash Hydra could read as a number (1558e31)
    assert "| all | 4 |" in reported("edited", f"commit='{commit}'"), "the run outside a checkout is left out"
    one_torch = reported("edited", f"commit='{commit.upper()}'", 'filter="tags.version.torch = \\"2.13.0\\""')
    assert "| all | 3 |" in one_torch and "version.torch" not in one_torch
    [logged] = [r for r in runs_in(store, "edited") if "explab.report.filter" in r.data.tags]
    assert logged.data.tags["explab.report.filter"] == 'tags.version.torch = "2.13.0"'
    assert logged.data.tags["explab.report.commit"] == commit.upper()
    with pytest.raises(UsageError, match=r"^commit=12 is not a commit: give its hash or the start of it, 4 hex"):
        reported("edited", "commit=12")
    with pytest.raises(UsageError, match=r"^commit=1.558e\+34 was read as a number, not a hash: quote the hash"):
        reported("edited", "commit=1558e31")
    with pytest.raises(UsageError, match=r'^filter="tags.git.dirty" is not a filter MLflow can read: .* joined by'):
        reported("edited", 'filter="tags.git.dirty"')
    with pytest.raises(UsageError, match=r"^experiment 'edited' has no FINISHED training runs of commit ffff1 to"):
        reported("edited", "commit=ffff1")


def test_commit_selects_the_runs_of_a_labs_commit_as_of_explabs(compose_cfg, store: Path) -> None:
    """A lab's runs trained from two commits of its own package, with one explab: the note named the lab's
    commits and could only suggest an MLflow filter, since commit= read explab's checkout alone."""
    explab, lab_before, lab_after = "e" * 40, "1a2b3c4" + "0" * 33, "5d6e7f8" + "0" * 33
    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("lab", artifact_location=str(store / "artifacts"))
    for seed, lab in enumerate((lab_before, lab_before, lab_after), start=1):
        run = client.create_run(experiment, tags={"git.commit": explab, "git.wine_lab.commit": lab})
        client.log_param(run.info.run_id, "seed", seed)
        client.log_metric(run.info.run_id, "test/acc", 0.9 + seed / 100)
        client.set_terminated(run.info.run_id, "FINISHED")

    def reported(*only: str) -> str:
        return report(compose_cfg("experiment_name=lab", f"tracking_uri={uri}", *only, config_name="report"))

    said = "These runs trained from different code (git.wine_lab.commit 1a2b3c4 (2 runs), 5d6e7f8 (1 run))"
    assert said in reported() and "To report one commit's runs, add commit=COMMIT." in reported()
    assert "| all | 1 |" in reported("commit=5d6e7f8"), "the lab's commit"
    assert "| all | 2 |" in reported("commit=1A2B3C4")
    assert "| all | 3 |" in reported("commit=eeeeeee"), "explab's"


def test_runs_on_different_hardware_are_named_and_their_timings_called_incomparable(
    compose_cfg, store: Path, caplog
) -> None:
    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("timed", artifact_location=str(store / "artifacts"))
    gpus = {1: "NVIDIA A100-SXM4-80GB", 2: "NVIDIA A100-SXM4-80GB", 3: "NVIDIA H200"}
    for seed, gpu in gpus.items():
        run = client.create_run(experiment, tags={"hardware.gpu": gpu, "hardware.cpu_capability": "AVX512"})
        client.log_param(run.info.run_id, "seed", seed)
        client.log_metric(run.info.run_id, "test/acc", 0.9 + seed / 100)
        client.log_metric(run.info.run_id, "perf/fit_seconds", 30.0 / seed)
        client.set_terminated(run.info.run_id, "FINISHED")
    old = client.create_run(experiment)  # recorded before runs named their hardware: not counted
    client.log_param(old.info.run_id, "seed", 4)
    client.log_metric(old.info.run_id, "test/acc", 0.95)
    client.set_terminated(old.info.run_id, "FINISHED")

    def reported(*overrides: str) -> str:
        return report(compose_cfg("experiment_name=timed", f"tracking_uri={uri}", *overrides, config_name="report"))

    with caplog.at_level(logging.WARNING, logger="explab.report"):
        markdown = reported("metrics=[test/acc,perf/fit_seconds]")
    said = "hardware.gpu NVIDIA A100-SXM4-80GB (2 runs), NVIDIA H200 (1 run)"
    assert f"These runs trained on different hardware ({said}): perf/fit_seconds compares machines" in markdown
    assert "hardware.cpu_capability" not in markdown, "what the runs share is not named"
    assert "trained on different hardware" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="explab.report"):
        markdown = reported("metrics=[test/acc]")
    assert f"({said}): the same seed gives other numbers on each." in markdown
    assert "different hardware" not in caplog.text, "an accuracy moves by about what a seed moves it: no warning"

    client.set_tag(
        next(iter(client.search_runs([experiment], "params.seed = '3'"))).info.run_id, "hardware.gpu", gpus[1]
    )
    assert "different hardware" not in reported("metrics=[test/acc,perf/fit_seconds]")


def _report(compose_cfg, uri: str, *overrides: str) -> tuple[str, dict[str, dict[str, str]]]:
    """The report's Markdown and its comparisons.csv, read back from the report run, keyed by configuration."""
    cfg = compose_cfg("experiment_name=groups", f"tracking_uri={uri}", *overrides, config_name="report")
    markdown = report(cfg)
    client = mlflow.tracking.MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("groups").experiment_id], "tags.`explab.report` = 'true'")
    folder = Path(client.download_artifacts(run.info.run_id, "report"))
    assert (folder / "intervals.png").stat().st_size > 0
    compared = folder / "comparisons.csv"
    rows = list(csv.DictReader(compared.open())) if compared.exists() else []
    return markdown, {f"{r['metric']} {r['configuration']}": r for r in rows}


def _cells(markdown: str, configuration: str) -> list[float]:
    """The numbers in a configuration's row of the report table: n, mean, std, interval low and high."""
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {configuration} |"))
    return [float(x) for x in re.findall(r"\d+\.?\d*", line.split("|", 2)[2])]


def test_intervals_are_student_t_over_the_seeds(compose_cfg, seed_groups: str) -> None:
    markdown, _ = _report(compose_cfg, seed_groups, "metrics=[test/acc]")
    for lr in ("0.1", "0.2", "0.4"):
        values = list(GROUPS[lr].values())
        low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
        expected = [len(values), np.mean(values), np.std(values, ddof=1), low, high]
        assert _cells(markdown, f"optimizer.lr={lr}") == pytest.approx(expected, abs=1e-4), markdown
    assert "| optimizer.lr=0.5 | 1 | 0.9500 | n too small |" in markdown
    assert "bootstrap" not in markdown, "t intervals keep their level over few seeds"


def test_a_metric_some_seeds_did_not_log_says_how_many_did(compose_cfg, store: Path) -> None:
    """The interval cell said "n too small" beside n = 3 for a metric one seed logged, and for one none did."""
    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("partly", artifact_location=str(store / "artifacts"))
    logged = {
        ("0.1", "1"): {"test/acc": 0.90, "val/acc": 0.91},
        ("0.1", "2"): {"test/acc": 0.92},
        ("0.1", "3"): {"test/acc": 0.94},
        ("0.2", "1"): {"test/acc": 0.80},  # a recipe that does not validate
        ("0.2", "2"): {"test/acc": 0.82},
    }
    for (lr, seed), metrics in logged.items():
        run = client.create_run(experiment)
        for key, param in {"seed": seed, "optimizer.lr": lr}.items():
            client.log_param(run.info.run_id, key, param)
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, "FINISHED")
    cfg = compose_cfg(
        "experiment_name=partly", f"tracking_uri={uri}", "metrics=[test/acc,val/acc]", config_name="report"
    )
    markdown = report(cfg)
    assert (
        "| optimizer.lr=0.1 | 3 | 0.9200 ± 0.0200 | [0.8703, 0.9697] | 0.9100 | n too small (1 of 3 logged it) |"
        in (markdown)
    )
    assert "| optimizer.lr=0.2 | 2 | 0.8100 ± 0.0141 | [0.6829, 0.9371] | n/a | not logged |" in markdown


def test_an_accuracys_interval_ends_at_1(compose_cfg, store: Path) -> None:
    """Student t over 0.98, 0.99 and 1.0 reaches 1.0148; no mean accuracy lies there."""
    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("near_one", artifact_location=str(store / "artifacts"))
    for seed, value in {"1": 0.98, "2": 0.99, "3": 1.0}.items():
        run = client.create_run(experiment)
        client.log_param(run.info.run_id, "seed", seed)
        client.log_metric(run.info.run_id, "test/acc", value)
        client.set_terminated(run.info.run_id, "FINISHED")
    markdown = report(compose_cfg("experiment_name=near_one", f"tracking_uri={uri}", config_name="report"))
    row = next(line for line in markdown.splitlines() if line.startswith("| ") and "| 3 |" in line)
    assert "| 0.9900 ± 0.0100 | [0.9652, 1.0000] |" in row, markdown


def test_bootstrap_intervals_lie_inside_the_values(compose_cfg, seed_groups: str) -> None:
    markdown, _ = _report(compose_cfg, seed_groups, "metrics=[test/acc]", "ci=bootstrap")
    assert "percentile bootstrap" in markdown
    line = next(line for line in markdown.splitlines() if "optimizer.lr=0.1 " in line)
    low, high = map(float, line.split("[")[1].split("]")[0].split(", "))
    t_low, t_high = stats.t.interval(
        0.95, 3, loc=np.mean(list(BASELINE.values())), scale=stats.sem(list(BASELINE.values()))
    )
    # a percentile bootstrap of four values cannot leave their range, unlike the t interval
    assert min(BASELINE.values()) <= low < high <= max(BASELINE.values()) and (low, high) != (t_low, t_high)
    # so it holds the mean less often than its 95 % say, and the report says so
    assert (
        "These percentile bootstrap intervals of 3 or 4 seeds are narrower than their level says: of two seeds it "
        "is their range, which holds the mean half the time, and it keeps its level only from about 10 seeds on. "
        "Use ci=t, or ci=pooled"
    ) in markdown


def test_pooled_intervals_share_one_deviation_over_the_configurations(compose_cfg, seed_groups: str) -> None:
    markdown, _ = _report(compose_cfg, seed_groups, "metrics=[test/acc]", "ci=pooled")
    assert "Student t, pooled deviation" in markdown
    groups = [list(g.values()) for g in GROUPS.values() if len(g) > 1]
    freedom = sum(len(g) - 1 for g in groups)
    pooled = np.sqrt(sum((len(g) - 1) * np.var(g, ddof=1) for g in groups) / freedom)
    for lr in ("0.1", "0.2", "0.3", "0.4"):
        values = list(GROUPS[lr].values())
        half = stats.t.ppf(0.975, freedom) * pooled / np.sqrt(len(values))
        expected = [
            len(values),
            np.mean(values),
            np.std(values, ddof=1),
            np.mean(values) - half,
            np.mean(values) + half,
        ]
        assert _cells(markdown, f"optimizer.lr={lr}") == pytest.approx(expected, abs=1e-4), markdown
    assert "| optimizer.lr=0.5 | 1 | 0.9500 | n too small |" in markdown


def _holm(pvalues: list[float]) -> list[float]:
    """Holm's adjustment written out for the test: sorted p times (m, m-1, ...), kept non-decreasing."""
    order = sorted(range(len(pvalues)), key=pvalues.__getitem__)
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@pytest.mark.parametrize("test", ["t", "wilcoxon"])
def test_configurations_against_a_baseline_match_scipy(compose_cfg, seed_groups: str, test: str) -> None:
    markdown, rows = _report(
        compose_cfg, seed_groups, "metrics=[test/acc,test/loss]", "baseline={optimizer.lr:0.1}", f"test={test}"
    )
    paired = stats.wilcoxon if test == "wilcoxon" else stats.ttest_rel
    base = list(BASELINE.values())
    expected_p = [
        paired(list(CLEARLY_BETTER.values()), base).pvalue,
        paired(list(INDISTINGUISHABLE.values()), base).pvalue,
        stats.ttest_ind(list(OTHER_SEEDS.values()), base, equal_var=False).pvalue,
    ]
    holm = _holm(expected_p)
    for metric, better in (("test/acc", "better"), ("test/loss", "better")):  # less loss is better
        for lr, p, p_holm in zip(("0.2", "0.3", "0.4"), expected_p, holm, strict=True):
            row = rows[f"{metric} optimizer.lr={lr}"]
            assert float(row["p"]) == pytest.approx(p) and float(row["p (Holm)"]) == pytest.approx(p_holm), row
        assert rows[f"{metric} optimizer.lr=0.4"]["test"] == "welch"
        assert rows[f"{metric} optimizer.lr=0.5"]["verdict"] == "n too small"
        if test == "t":
            assert rows[f"{metric} optimizer.lr=0.3"]["verdict"] == "indistinguishable"
            assert rows[f"{metric} optimizer.lr=0.2"]["verdict"] == better
        else:
            # four seeds: Wilcoxon's smallest two-sided p is 0.125, so it can call neither better nor worse, and
            # "indistinguishable" would read as runs that agree
            for lr in ("0.2", "0.3"):
                row = rows[f"{metric} optimizer.lr={lr}"]
                assert (row["verdict"], float(row["smallest p"])) == ("n too small", pytest.approx(0.125)), row
    if test == "wilcoxon":
        assert "wilcoxon over 4 vs 4 runs: no p below 0.1250), so it cannot call a configuration better" in markdown
    else:
        assert "rank test" not in markdown.split("## Against the baseline")[1].split("\n\n", 2)[2]
    differences = np.subtract(list(CLEARLY_BETTER.values()), base)
    row = rows["test/acc optimizer.lr=0.2"]
    assert float(row["effect size (d)"]) == pytest.approx(differences.mean() / differences.std(ddof=1))
    assert float(row["difference"]) == pytest.approx(differences.mean())
    assert "## Against the baseline (optimizer.lr=0.1)" in markdown


def test_a_worse_configuration_is_called_worse(compose_cfg, seed_groups: str) -> None:
    _, rows = _report(compose_cfg, seed_groups, "metrics=[test/acc]", "baseline=lr0.2-seed3")
    assert rows["test/acc optimizer.lr=0.1"]["verdict"] == "worse"
    assert rows["test/acc optimizer.lr=0.3"]["verdict"] == "worse"


def test_an_experiment_without_finished_runs_says_what_its_runs_did(compose_cfg, store: Path) -> None:
    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("diverged", artifact_location=str(store / "artifacts"))
    for status in ("FAILED", "FAILED", "KILLED"):
        client.set_terminated(client.create_run(experiment).info.run_id, status)
    cfg = compose_cfg("experiment_name=diverged", f"tracking_uri={uri}", config_name="report")
    with pytest.raises(
        UsageError, match=r"'diverged' has no FINISHED training runs to report \(its runs: 2 FAILED, 1 KILLED;"
    ):
        report(cfg)


def test_a_filter_that_matches_no_run_names_the_values_its_params_hold(compose_cfg, seed_groups: str) -> None:
    """MLflow compares params as the text they were logged as: ``params.optimizer.lr = "0.10"`` matches no run
    of 0.1. The refusal counted the experiment's unfinished runs ("its runs: ..."), or nothing, as if no run
    had finished, where every run had and the filter had left them out."""
    finished = sum(len(values) for values in GROUPS.values())
    with pytest.raises(UsageError) as refused:
        report(compose_cfg("experiment_name=groups", f"tracking_uri={seed_groups}",
                           'filter="params.optimizer.lr = \\"0.10\\" and params.`model.name` = \\"cnn\\""',
                           config_name="report"))  # fmt: skip
    assert str(refused.value).endswith(
        f"to report (this leaves out the experiment's {finished} FINISHED training runs; params.optimizer.lr is "
        '"0.1", "0.2", "0.3", "0.4", "0.5" there; params.model.name is "cnn" there)'
    ), str(refused.value)
    client = mlflow.tracking.MlflowClient(seed_groups)
    diverged = client.create_run(client.get_experiment_by_name("groups").experiment_id)
    client.log_param(diverged.info.run_id, "optimizer.lr", "0.10")
    client.set_terminated(diverged.info.run_id, "FAILED")
    with pytest.raises(
        UsageError, match=r'"0.10"" to report \(this leaves out .*; of the runs it selects, 1 FAILED; each'
    ):
        report(compose_cfg("experiment_name=groups", f"tracking_uri={seed_groups}",
                           'filter="params.optimizer.lr = \\"0.10\\""', config_name="report"))  # fmt: skip
    with pytest.raises(UsageError, match=r"of commit abcd1 to report \(this leaves out the experiment's \d+ FIN"):
        report(
            compose_cfg("experiment_name=groups", f"tracking_uri={seed_groups}", "commit=abcd1", config_name="report")
        )


def test_the_values_a_filter_left_out_are_listed_in_numeric_order(compose_cfg, store: Path) -> None:
    """The values a filtered param holds are read as numbers where they are: ``1e-05`` before ``0.001``, and
    ``2`` before ``10``, where their text would put them the other way round."""
    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("lrs", artifact_location=str(store / "artifacts"))
    for lr, depth in (("0.001", "10"), ("1e-05", "2"), ("0.01", "3")):
        run = client.create_run(experiment).info.run_id
        client.log_param(run, "optimizer.lr", lr)
        client.log_param(run, "model.depth", depth)
        client.set_terminated(run, "FINISHED")
    with pytest.raises(UsageError) as refused:
        report(compose_cfg("experiment_name=lrs", f"tracking_uri={uri}", "metrics=[test/acc]",
                           'filter="params.optimizer.lr = \\"1e-5\\" and params.`model.depth` = \\"20\\""',
                           config_name="report"))  # fmt: skip
    assert 'params.optimizer.lr is "1e-05", "0.001", "0.01" there; params.model.depth is "2", "3", "10" there' in str(
        refused.value
    ), str(refused.value)


def test_seeds_that_did_not_finish_are_named_under_the_table(compose_cfg, store: Path) -> None:
    """A configuration that diverged on some seeds showed the survivors' mean and their n, with no word of the
    others, and one that diverged on every seed had no row at all: both looked better than they train."""
    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment("unstable", artifact_location=str(store / "artifacts"))
    recorded = [  # lr, seed, status, test/acc, tags
        ("0.01", "1", "FINISHED", 0.90, {}),
        ("0.01", "2", "FINISHED", 0.92, {}),
        ("0.01", "3", "FAILED", None, {}),
        ("0.01", "3", "FINISHED", 0.91, {}),  # diverged, then trained again to its end: it finished
        ("0.3", "1", "FINISHED", 0.95, {}),
        ("0.3", "2", "FINISHED", 0.96, {}),
        ("0.3", "3", "FAILED", None, {}),
        ("0.3", "10", "KILLED", None, {}),
        ("0.3", "4", "KILLED", None, {"optuna.trial_state": "PRUNED"}),  # the search stopped it on purpose
        ("0.3", "5", "RUNNING", None, {}),
        ("3.0", "1", "FAILED", None, {}),
        ("3.0", "2", "FAILED", None, {}),
    ]
    for lr, seed, status, accuracy, tags in recorded:
        run = client.create_run(experiment, tags=tags).info.run_id
        client.log_param(run, "optimizer.lr", lr)
        client.log_param(run, "seed", seed)
        if accuracy is not None:
            client.log_metric(run, "test/acc", accuracy)
        if status != "RUNNING":
            client.set_terminated(run, status)
    cfg = compose_cfg("experiment_name=unstable", f"tracking_uri={uri}", "metrics=[test/acc]", config_name="report")
    markdown = report(cfg)
    assert "| optimizer.lr=0.3 | 2 | 0.9550 ± 0.0071 |" in markdown, "the table stays the finished seeds'"
    note = markdown.split("Seeds that did not finish are in no row", 1)[1]
    assert "a seed still RUNNING joins its row once it finishes" in note
    assert re.findall(r"^- .*$", note, re.MULTILINE) == [
        "- optimizer.lr=0.3: 3 of 5 seeds did not finish: 1 FAILED (seed 3), 1 KILLED (seed 10), 1 RUNNING (seed 5)",
        "- optimizer.lr=3.0: none of its 2 seeds finished: FAILED (seeds 1, 2)",
    ]
    [run] = client.search_runs([experiment], "tags.`explab.report` = 'true'")
    table = Path(client.download_artifacts(run.info.run_id, "report/report.csv"))
    assert {r["configuration"]: r["not finished"] for r in csv.DictReader(table.open())} == {
        "optimizer.lr=0.01": "0",
        "optimizer.lr=0.3": "3",
    }


@pytest.mark.parametrize("ci", ["t", "bootstrap", "pooled"])
def test_an_interval_of_seeds_that_tie_says_so(compose_cfg, store: Path, ci: str) -> None:
    """Three seeds at one accuracy gave [0.9500, 0.9500] and nothing more: read as a mean known exactly."""
    uri = _seed_runs(store, "groups", "optimizer.lr", {"0.1": (0.95, 0.95, 0.95), "0.2": (0.90, 0.92, 0.94)})
    markdown, _ = _report(compose_cfg, uri, "metrics=[test/acc]", f"ci={ci}")
    tied = next(line for line in markdown.splitlines() if line.startswith("| optimizer.lr=0.1 |"))
    if ci == "pooled":  # the spread of the other configuration's seeds gives it its width
        assert "tie" not in tied and "seeds gave one value" not in markdown, markdown
        return
    assert tied.endswith("| [0.9500, 0.9500] (the seeds tie) |"), tied
    assert "An interval of no width says that its seeds gave one value" in markdown
    assert "ci=pooled takes the spread from the seeds of every configuration" in markdown


def _seed_runs(store: Path, experiment_name: str, key: str, seeds_by_value: dict[str, tuple[float, ...]]) -> str:
    """FINISHED runs of ``experiment_name``: for each value of ``key``, one run per seed 1, 2, ... with its
    ``test/acc``; returns the store's URI."""
    uri = tracking_uri_for(store)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.create_experiment(experiment_name, artifact_location=str(store / "artifacts"))
    for param, values in seeds_by_value.items():
        for seed, value in enumerate(values, start=1):
            run = client.create_run(experiment)
            client.log_param(run.info.run_id, key, param)
            client.log_param(run.info.run_id, "seed", seed)
            client.log_metric(run.info.run_id, "test/acc", value)
            client.set_terminated(run.info.run_id, "FINISHED")
    return uri


def test_a_baseline_names_a_config_groups_choice_as_labels_and_overrides_do(compose_cfg, store: Path) -> None:
    classes = {"torch.optim.Adam": (0.95, 0.96), "torch.optim.SGD": (0.90, 0.91)}
    uri = _seed_runs(store, "groups", "optimizer._target_", classes)

    def report_of(baseline: str) -> str:
        return report(compose_cfg("experiment_name=groups", f"tracking_uri={uri}", baseline, config_name="report"))

    for baseline in ("{optimizer:sgd}", "{optimizer:SGD}"):  # as overrides choose it, as labels name it
        assert "## Against the baseline (optimizer=SGD)" in report_of(f"baseline={baseline}")
    # a choice no run made: the params the message suggests are ones that match
    with pytest.raises(UsageError, match=r"or params such as 'baseline=\{optimizer:(Adam|SGD)\}'") as refused:
        report_of("baseline={optimizer:rmsprop}")
    assert "## Against the baseline" in report_of(re.search(r"'(baseline=\{.*\})'", str(refused.value)).group(1))


def test_a_baseline_may_be_a_drawn_number_as_the_table_shows_it(compose_cfg, store: Path) -> None:
    drawn = {"0.0012022983166419944": (0.95, 0.96), "0.0022881136684755237": (0.90, 0.91)}
    uri = _seed_runs(store, "drawn", "optimizer.lr", drawn)

    def report_of(baseline: str) -> str:
        return report(compose_cfg("experiment_name=drawn", f"tracking_uri={uri}", baseline, config_name="report"))

    table = report_of("baseline=null")
    assert "| optimizer.lr=0.001202 | 2 |" in table and "0.0012022983" not in table
    assert "## Against the baseline (optimizer.lr=0.002288)" in report_of("baseline={optimizer.lr:0.002288}")
    # fewer digits than a label shows are a value of their own, not a prefix
    with pytest.raises(UsageError, match="matches no FINISHED training run"):
        report_of("baseline={optimizer.lr:0.002}")


def test_a_baseline_that_matches_nothing_is_answered_with_one_that_matches(compose_cfg, store: Path) -> None:
    """The example params were cut from the labels at each ", ": a list value gave 'baseline={channels:[32}'."""
    uri = _seed_runs(store, "lists", "model.backbone.channels", {"[16, 32]": (0.95, 0.96), "[32, 64]": (0.90, 0.91)})

    def report_of(baseline: str) -> str:
        return report(compose_cfg("experiment_name=lists", f"tracking_uri={uri}", baseline, config_name="report"))

    with pytest.raises(UsageError, match="matches no FINISHED training run") as refused:
        report_of("baseline={optimizer.lr:0.5}")
    offered = re.search(r"params such as '(baseline=\{.*\})'", str(refused.value))
    assert offered, str(refused.value)
    channels = re.fullmatch(r"baseline=\{model.backbone.channels:(\[16, 32\]|\[32, 64\])\}", offered.group(1))
    assert channels, offered.group(1)
    assert f"## Against the baseline (model.backbone.channels={channels.group(1)})" in report_of(offered.group(1))


@pytest.mark.parametrize("same_sets", [False, True])
def test_runs_of_one_seed_tested_on_different_test_sets_are_named(compose_cfg, store: Path, same_sets: bool) -> None:
    """Two test fractions of digits test one seed on two different sets of images, and the report compared
    their test/acc, paired by seed, as if on the same examples."""
    client = mlflow.tracking.MlflowClient(tracking_uri_for(store))
    experiment = client.create_experiment("splits", artifact_location=str(store / "artifacts"))
    for fraction in ("0.15", "0.3"):
        for seed in (1, 2):
            run = client.create_run(experiment)
            client.log_param(run.info.run_id, "data.test_fraction", fraction)
            client.log_param(run.info.run_id, "seed", seed)
            client.set_tag(run.info.run_id, "data.fingerprint", "raw")
            tested = f"seed{seed}" if same_sets else f"seed{seed}-{fraction}"
            client.set_tag(run.info.run_id, "data.test_fingerprint", tested)
            client.log_metric(run.info.run_id, "test/acc", 0.9 + seed / 100)
            client.set_terminated(run.info.run_id, "FINISHED")
    cfg = compose_cfg("experiment_name=splits", f"tracking_uri={tracking_uri_for(store)}", config_name="report")
    markdown = report(cfg)
    said = "Runs of one seed were tested on different test sets (seeds 1, 2: their data.test_fingerprint differs"
    assert (said in markdown) is not same_sets, markdown


def test_runs_without_a_metric_to_report_are_answered_with_what_they_logged(compose_cfg, store: Path) -> None:
    """A smoke test's runs log no test/ metric: the refusal read "no run of 'smoke' logged ; give metrics=...",
    naming nothing."""
    client = mlflow.tracking.MlflowClient(tracking_uri_for(store))
    run = client.create_run(client.create_experiment("smoke", artifact_location=str(store / "artifacts")))
    client.log_metric(run.info.run_id, "perf/fit_seconds", 1.5)
    client.set_terminated(run.info.run_id, "FINISHED")
    cfg = compose_cfg("experiment_name=smoke", f"tracking_uri={tracking_uri_for(store)}", config_name="report")
    with pytest.raises(UsageError, match=r"logged a test/ metric or a best validation value \(trainer=fast_dev_run"):
        report(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("baseline=nobody", r"baseline=nobody matches no FINISHED training run; give a run name \(lr0.1-seed1"),
        ("baseline={model.name:cnn}", r"matches 5 configurations .*give more params"),
        ("ci=normal", r"ci=normal is not an interval explab computes; choose one of \['t', 'bootstrap', 'pooled'\]"),
        ("test=mann-whitney", r"choose one of \['t', 'wilcoxon'\]"),
        (
            "metrics=[test/accuracy]",
            r"no run of 'groups' logged test/accuracy; give .* from what they logged: test/acc, test/loss$",
        ),
        ("metrics=[]", r"metrics=\[\] names no metric"),
        ("confidence=95", r"alpha=0.05 and confidence=95 must lie between 0 and 1"),
        ("sweep=nosuch", r"sweep=nosuch is not a sweep of this experiment; give a study name or parent run id: none$"),
    ],
)
def test_bad_report_settings_are_named(compose_cfg, seed_groups: str, override: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _report(compose_cfg, seed_groups, override)
    assert not [r for r in runs_in_uri(seed_groups) if r.data.tags.get("explab.report")], "no report run is left"


def test_a_metric_no_run_logged_is_left_out_with_a_warning(compose_cfg, seed_groups: str, caplog) -> None:
    markdown, _ = _report(compose_cfg, seed_groups, "metrics=[test/acc,test/accuracy]")
    header = next(line for line in markdown.splitlines() if line.startswith("| configuration |"))
    assert header == "| configuration | n | test/acc | test/acc 95% CI |"
    assert "no run of 'groups' logged test/accuracy: left out of the report" in caplog.text


def test_one_metric_may_be_named_without_brackets(compose_cfg, seed_groups: str) -> None:
    markdown, rows = _report(
        compose_cfg, seed_groups, "metrics=test/acc", "lower_is_better=test/acc", "baseline=lr0.2-seed3"
    )
    header = next(line for line in markdown.splitlines() if line.startswith("| configuration |"))
    assert header == "| configuration | n | test/acc | test/acc 95% CI |"
    # test/acc declared lower-is-better: the configurations with the lower accuracy now win
    assert rows["test/acc optimizer.lr=0.1"]["verdict"] == "better"


def test_a_sweep_is_named_by_its_study_or_its_parent_run(compose_cfg, seed_groups: str) -> None:
    client = mlflow.tracking.MlflowClient(seed_groups)
    experiment = client.get_experiment_by_name("groups").experiment_id
    parent = client.create_run(experiment, tags={"explab.sweep": "parent", "optuna.study_name": "lr_search"})
    for run in client.search_runs([experiment], "params.`optimizer.lr` = '0.2'"):
        client.set_tag(run.info.run_id, "mlflow.parentRunId", parent.info.run_id)
    client.set_terminated(parent.info.run_id, "FINISHED")

    by_study, _ = _report(compose_cfg, seed_groups, "metrics=[test/acc]", "sweep=lr_search")
    rows = [line for line in by_study.splitlines() if line.startswith("| ") and "configuration" not in line]
    assert rows == [next(line for line in by_study.splitlines() if line.startswith("| all | 4 |"))], by_study
    client.delete_run(client.search_runs([experiment], "tags.`explab.report` = 'true'")[0].info.run_id)
    by_id, _ = _report(compose_cfg, seed_groups, "metrics=[test/acc]", f"sweep={parent.info.run_id}")
    assert by_id == by_study
    with pytest.raises(UsageError, match=rf"sweep=lr_serch is not a sweep .*: lr_search \({parent.info.run_id}\)$"):
        _report(compose_cfg, seed_groups, "sweep=lr_serch")


def runs_in_uri(uri: str) -> list:
    client = mlflow.tracking.MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name("groups").experiment_id])


def test_report_command_takes_a_params_baseline(seed_groups: str, tmp_path: Path) -> None:
    done = run_cli(
        "explab-report",
        "experiment=groups",
        f"tracking_uri={seed_groups}",
        "metrics=[test/acc]",
        "baseline={optimizer.lr:0.1}",
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "| test/acc | optimizer.lr=0.2 | 4 vs 4 | paired t |" in done.stdout
    failed = run_cli(
        "explab-report",
        "experiment=groups",
        f"tracking_uri={seed_groups}",
        "baseline=nobody",
        cwd=tmp_path,
        timeout=120,
    )
    assert failed.returncode != 0 and "baseline=nobody matches no FINISHED training run" in failed.stderr
