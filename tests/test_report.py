"""explab-report: a seed report of every configuration of an experiment."""

from __future__ import annotations

import statistics
from pathlib import Path

import mlflow
import pytest

from explab.report import report
from explab.train import train
from tests.conftest import runs_in, tracking_uri_for


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
    }


def test_report_of_unknown_experiment_names_the_known_ones(compose_cfg, store: Path) -> None:
    train(compose_cfg("trainer=fast_dev_run"))
    with pytest.raises(ValueError, match=r"no experiment 'nope'.*digits_cnn"):
        report(compose_cfg("experiment_name=nope", config_name="report"))
