"""The analysis notebooks run top to bottom against a small real sweep; any cell error fails the test."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from tests.conftest import run_cli, runs_in, tracking_uri_for
from tests.support.resumed import two_seeds_one_resumed_to_two_epochs

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sweep")
    done = run_cli(
        "explab-train",
        "-m",
        "hparams_search=digits_optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.replicates=2",
        "hydra.sweeper.replicate_top=2",
        "trainer.max_epochs=3",
        f"paths.mlruns_dir={folder}/mlruns",
        f"paths.log_dir={folder}/logs",
        "log_model=false",
        cwd=folder,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def execute(name: str, parameters: str, cwd: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        f"{name} is committed with outputs: strip them"
    )
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    notebook.cells.insert(index + 1, new_code_cell(parameters))
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def outputs_text(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
def test_compare_runs_notebook(swept: Path) -> None:
    uri = tracking_uri_for(swept / "mlruns")
    notebook = execute("compare_runs.ipynb", f'TRACKING_URI = "{uri}"\nEXPERIMENT = "digits_cnn"', swept)
    finished = [
        r
        for r in runs_in(swept / "mlruns", "digits_cnn")
        if r.info.status == "FINISHED" and "explab.sweep" not in r.data.tags
    ]
    assert finished, "the sweep left finished trials"
    assert f"{len(finished)} finished training runs in 'digits_cnn'" in outputs_text(notebook)
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "intervals, learning curves and parallel coordinates are drawn"
    summaries = [
        o["data"]["text/html"] for c in notebook.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})
    ]
    assert any("<th>not finished</th>" in table for table in summaries), "the summary counts the seeds it leaves out"
    [axes] = [line for line in outputs_text(notebook).splitlines() if line.startswith("parallel axes:")]
    # the params the sweep searched are axes; the seed and the trial number, which only repeat, are not
    assert "optimizer.lr" in axes and "test/acc" in axes and "seed" not in axes and "optuna_trial" not in axes, axes


@pytest.mark.slow
def test_the_compare_table_shows_what_a_resumed_run_trained(compose_cfg, store: Path) -> None:
    """MLflow keeps a run's params as first logged: a seed resumed from one epoch to two showed
    trainer.max_epochs 1 in the table, next to the seed that trained one epoch (explab-report tells them apart)."""
    two_seeds_one_resumed_to_two_epochs(compose_cfg, store)
    notebook = execute("compare_runs.ipynb", f'TRACKING_URI = "{tracking_uri_for(store)}"', store.parent)
    tables = [
        o["data"]["text/html"] for c in notebook.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})
    ]
    assert tables[0].count(">2 (resumed from 1)</td>") == 1, tables[0][:3000]


@pytest.mark.slow
def test_the_compare_notebook_ranks_a_regression_by_its_error_and_draws_its_curve(compose_cfg, store: Path) -> None:
    """Given METRIC = "val/mse_best" alone, the notebook ranked the largest error first (HIGHER_IS_BETTER stayed
    True) and drew the best runs' val/acc, which a regression never logs: an empty panel."""
    from explab.train import train

    for lr in (0.01, 0.0001):  # two configurations an epoch apart in error
        train(compose_cfg("experiment=diabetes_mlp", f"optimizer.lr={lr}", "trainer.max_epochs=2", "log_plots=false"))
    runs = runs_in(store, "diabetes_mlp")
    best = min(runs, key=lambda r: r.data.metrics["val/mse_best"])
    notebook = execute(
        "compare_runs.ipynb",
        f'TRACKING_URI = "{tracking_uri_for(store)}"\nEXPERIMENT = "diabetes_mlp"\nMETRIC = "val/mse_best"',
        store.parent,
    )
    tables = [
        o["data"]["text/html"] for c in notebook.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})
    ]
    assert tables[0].index(best.info.run_id) < tables[0].index(
        ({r.info.run_id for r in runs} - {best.info.run_id}).pop()
    )
    assert "learning curves of the 2 best runs by val/mse_best: val/loss and val/mse" in outputs_text(notebook)


@pytest.mark.slow
def test_sweep_analysis_notebook(swept: Path) -> None:
    storage = f"journal:///{swept}/mlruns/optuna/digits_cnn.journal"
    notebook = execute("sweep_analysis.ipynb", f'STORAGE = "{storage}"\nSTUDY = "digits_cnn_optuna"', swept)
    text = outputs_text(notebook)
    assert "6 trials in 'digits_cnn_optuna'" in text, "4 trials of the search and 2 replicates"
    assert text.count(": n=2 mean ") == 2 and "winner over seeds: trial " in text


@pytest.mark.slow
def test_sweep_analysis_notebook_shows_the_pareto_front_of_two_objectives(tmp_path: Path) -> None:
    done = run_cli(
        "explab-train",
        "-m",
        "hparams_search=digits_optuna",
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.direction=[maximize,minimize]",
        "hydra.sweeper.metric=[val/acc_best,model/parameters]",
        "hydra.sweeper.n_trials=3",
        "trainer.max_epochs=1",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    storage = f"journal:///{tmp_path}/mlruns/optuna/digits_cnn.journal"
    notebook = execute("sweep_analysis.ipynb", f'STORAGE = "{storage}"\nSTUDY = "digits_cnn_optuna"', tmp_path)
    text = outputs_text(notebook)
    assert "3 trials in 'digits_cnn_optuna'; 2 objectives, Pareto front of" in text
    assert "no replicates" in text
