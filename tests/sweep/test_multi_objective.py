"""Two objectives through a real ``explab-train -m``: the study, its Pareto front and its record in MLflow."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import runs_in
from tests.sweep.test_sweeper import explab_sweep

TWO_OBJECTIVES = (
    "hydra.sweeper.direction=[maximize,minimize]",
    "hydra.sweeper.metric=[val/acc_best,model/parameters]",
)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ((TWO_OBJECTIVES[1], "hydra/sweeper/pruner=median"), "cannot be pruned"),
        (("hydra/sweeper/pruner=none", "hydra.sweeper.metric=[val/acc_best]"), "one direction per metric"),
        (("hydra/sweeper/pruner=none", "hydra.sweeper.metric=[val/acc_best,perf/seconds]"), "never logs"),
    ],
)
def test_settings_two_objectives_cannot_run_with_are_refused_before_any_trial(
    tmp_path: Path, settings: tuple[str, ...], message: str
) -> None:
    done = explab_sweep(tmp_path, "hydra.sweeper.direction=[maximize,minimize]", *settings)
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == []


@pytest.mark.slow
def test_a_two_objective_sweep_records_its_front_and_hypervolume(tmp_path: Path) -> None:
    done = explab_sweep(
        tmp_path,
        *TWO_OBJECTIVES,
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.n_trials=5",
        "trainer.max_epochs=2",
        "hydra.sweeper.sampler.n_startup_trials=3",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Pareto front (val/acc_best, model/parameters)" in done.stdout
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    [parent] = [r for r in runs if r.data.tags.get("explab.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 5 and all(r.info.status == "FINISHED" for r in children)
    points = {r.info.run_id: (r.data.metrics["val/acc_best"], r.data.metrics["model/parameters"]) for r in children}

    def dominated(p: tuple[float, float]) -> bool:
        return any(o[0] >= p[0] and o[1] <= p[1] and o != p for o in points.values())

    front = {run_id for run_id, p in points.items() if not dominated(p)}
    assert {r.info.run_id for r in children if r.data.tags["explab.pareto"] == "true"} == front
    assert {r.info.run_id for r in children if r.data.tags["explab.pareto"] == "false"} == set(points) - front

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    folder = client.download_artifacts(parent.info.run_id, "sweep", str(tmp_path / "download"))
    with open(Path(folder) / "pareto.csv") as table:
        rows = list(csv.DictReader(table))
    assert {row["run_id"] for row in rows} == front
    assert all(float(row["model/parameters"]) == points[row["run_id"]][1] for row in rows)
    assert {"pareto_front.png", "hypervolume_history.png"} <= {p.name for p in (Path(folder) / "plots").iterdir()}
    history = client.get_metric_history(parent.info.run_id, "hypervolume")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3, 4, 5]
    values = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert values[0] > 0 and values == sorted(values), "the front only grows"
    assert parent.data.tags["optuna.direction"] == "maximize, minimize"
