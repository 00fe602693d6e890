"""Configs written for Hydra's own Optuna sweeper run with explab's once the sweeper line names it.

The example apps of ``hydra-optuna-sweeper`` (a sphere, a two-objective function, a custom search space) are
copied to ``tmp_path`` with only ``override hydra/sweeper: optuna`` changed, and run as their README runs them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).parents[1] / "support" / "apps" / "hydra_optuna_examples"


def run_example(tmp_path: Path, script: str, config_dir: str) -> tuple[dict, list[dict]]:
    """Run ``script -m`` from a copy of the examples; (optimization_results.yaml, each job's overrides)."""
    app = tmp_path / "app"
    shutil.copytree(EXAMPLES, app)
    config = app / config_dir / "config.yaml"
    original = config.read_text()
    config.write_text(original.replace("override hydra/sweeper: optuna\n", "override hydra/sweeper: explab_optuna\n"))
    assert config.read_text() != original, "the example names Hydra's Optuna sweeper"
    done = subprocess.run(
        [sys.executable, script, "-m", f"hydra.sweep.dir={tmp_path}/multirun"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=app,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "multirun" / "optimization_results.yaml").read_text())
    jobs = sorted((tmp_path / "multirun").glob("*/.hydra/overrides.yaml"), key=lambda p: int(p.parts[-3]))
    overrides = [dict(o.split("=", 1) for o in yaml.safe_load(p.read_text()) if "optuna_trial" not in o) for p in jobs]
    return results, overrides


@pytest.mark.slow
def test_the_sphere_example_runs_its_20_trials_over_its_grid(tmp_path: Path) -> None:
    results, jobs = run_example(tmp_path, "sphere.py", "conf")
    assert len(jobs) == 20, "n_trials: 20 trained trials (proposals that repeat a point are not trained again)"
    assert all(job["y"] in {"-5", "0", "5"} and -5.5 <= float(job["x"]) <= 5.5 for job in jobs)
    assert len({(job["x"], job["y"]) for job in jobs}) == 20
    best = min(float(job["x"]) ** 2 + float(job["y"]) ** 2 for job in jobs)
    assert results["best_value"] == best
    assert results["best_params"]["x"] ** 2 + results["best_params"]["y"] ** 2 == best


@pytest.mark.slow
def test_the_two_objective_example_reports_its_pareto_front(tmp_path: Path) -> None:
    results, jobs = run_example(tmp_path, "multi-objective.py", "multi-objective-conf")
    assert len(jobs) == 20

    def values(x: float, y: float) -> tuple[float, float]:  # the example's Binh and Korn function
        return 4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2

    every = [values(float(job["x"]), float(job["y"])) for job in jobs]
    front = [tuple(s["values"]) for s in results["solutions"]]
    assert front and all(values(s["params"]["x"], s["params"]["y"]) == tuple(s["values"]) for s in results["solutions"])

    def dominated(point: tuple[float, float]) -> bool:
        return any(o[0] <= point[0] and o[1] <= point[1] and o != point for o in every)

    assert not any(dominated(p) for p in front), "no trial beats a front member on both objectives"
    assert {p for p in every if not dominated(p)} == set(front), "every undominated trial is on the front"


@pytest.mark.slow
def test_the_custom_search_space_example_suggests_its_extra_parameters(tmp_path: Path) -> None:
    results, jobs = run_example(tmp_path, "custom-search-space-objective.py", "custom-search-space")
    assert len(jobs) == 20
    for job in jobs:  # configure() draws z within 0.5 of the x drawn, and a new key +w in [0, 1]
        assert abs(float(job["z"]) - float(job["x"])) <= 0.5
        assert 0.0 <= float(job["+w"]) <= 1.0
    assert set(results["best_params"]) == {"x", "y", "z", "+w"}
