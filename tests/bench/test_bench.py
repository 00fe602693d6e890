"""The benchmarks still run and print their ratio lines (tiny sizes, one repetition: the figures mean nothing).

Performance targets are judged by ``make bench`` on real sizes, never here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
RATIO = re.compile(r"^ *(?P<name>[^:\[]+): (?P<value>\d+\.\d+)x\b", re.MULTILINE)


def run_bench(script: str) -> str:
    env = {**os.environ, "EXPLAB_BENCH_QUICK": "1", "EXPLAB_BENCH_REPEATS": "1"}
    done = subprocess.run([sys.executable, str(BENCH / script)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_overhead_bench_prints_its_ratios() -> None:
    out = run_bench("overhead.py")
    names = {m["name"] for m in RATIO.finditer(out)}
    expected = {
        "framework overhead (digits)",
        "of it Lightning's own loop (digits)",
        "logging cost (digits)",
        "start-up",
        "exit",
    }
    assert expected <= names, out
    assert "agree to 1e-05" in out, "with determinism on, explab and the hand-written loop end on the same loss"
    assert "DISAGREE" not in out, "the bare LightningModule trains exactly as the hand-written loop does"


@pytest.mark.slow
def test_sweep_bench_prints_overhead_and_parallel_ratio() -> None:
    out = run_bench("sweeps.py")
    assert re.search(r"^sweep overhead: -?\d+\.\d+ s per trial", out, re.MULTILINE), out
    assert "parallel sweep" in {m["name"] for m in RATIO.finditer(out)}, out


@pytest.mark.slow
def test_sweep_efficiency_bench_compares_the_grid_with_the_search_recipe() -> None:
    out = run_bench("sweep_efficiency.py")
    assert re.search(r"^grid: best val/acc_best \d\.\d{4}, \d+ epochs in 2 trials", out, re.MULTILINE), out
    assert re.search(r"^digits_optuna \(TPE \+ median pruner\), sampler seed 0: ", out, re.MULTILINE), out
    assert re.search(r"^sweep best gap: [+-]\d+\.\d\d points", out, re.MULTILINE), out
    assert "sweep epochs ratio" in {m["name"] for m in RATIO.finditer(out)}, out


@pytest.mark.slow
def test_search_features_bench_measures_the_front_and_the_warm_start() -> None:
    out = run_bench("search_features.py")
    assert re.search(r"^grid: 2 points, front of \d, hypervolume \S+ \(reference accuracy", out, re.MULTILINE), out
    assert re.search(r"^two-objective TPE, sampler seed 0: front of \d, hypervolume \d+\.\d\d of", out, re.MULTILINE)
    assert re.search(r"^pareto hypervolume share: \d+\.\d\d \(median of 1 sampler seeds", out, re.MULTILINE), out
    chosen = r"^pareto hypervolume share of the configurations chosen, on the grid's measurements: \d+\.\d\d \("
    assert re.search(chosen, out, re.MULTILINE), out
    seeds = r"^sampler seed 0 \(new searches 1000\): bar \d\.\d{4} \(earlier 2-trial search's best \d\.\d{4}, "
    assert re.search(seeds, out, re.MULTILINE), out
    assert re.search(r"^warm start epochs ratio: ", out, re.MULTILINE), out
