"""Sweep overhead per trial, and the throughput of two worker processes against one, side by side.

    .venv/bin/python bench/sweeps.py        # part of `make bench`

- sweep overhead: the real ``explab-train -m hparams_search=digits_optuna`` (MLflow on, journal storage),
  run with few and with many trials, alternately; overhead per trial is the extra wall time per extra trial
  once the trials' own fit times (``perf/fit_seconds`` of each trial's MLflow run) are taken away. Process
  start-up and the study's set-up cancel out, so what is left is what every trial costs around its fit
  (composing its config, its MLflow run, testing, plots, Optuna's ask/tell). Target <= 0.5 s.
- parallel sweep: one command with ``hydra.sweeper.n_jobs=2`` (two workers, one torch thread each, which
  the command gives them) against ``n_jobs=1`` (torch's default threads), alternately; trials per hour from
  the first trial's start to the last trial's end in Optuna's own records (start-up is the start-up
  benchmark's business; the wall time including it is printed too). Target >= 1.7x on 2 cores.
"""

from __future__ import annotations

import itertools
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import optuna

from explab.sweep import is_repeat
from explab.sweep.storage import open_storage
from explab.tracking.store import open_client
from harness import BIN, QUICK, interleaved, ratio_line

FEW, MANY = (1, 2) if QUICK else (2, 8)
# a sweep's usual size: each worker process pays a one-off warm-up in its first trial (about 0.5 s: lazy
# imports, first fit), which with 10 trials was a fifth of the two-worker side's trials and a tenth of the other's
PARALLEL_TRIALS = 2 if QUICK else 24
EPOCHS = 1 if QUICK else 4
counter = itertools.count()


def sweep_command(folder: Path, name: str, n_trials: int, *extra: str) -> list[str]:
    return [
        str(BIN / "explab-train"),
        "-m",
        "hparams_search=digits_optuna",
        "hydra/sweeper/pruner=none",  # every trial runs all its epochs: the same work on both sides
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.study_name={name}",
        f"paths.mlruns_dir={folder}/mlruns",
        f"paths.log_dir={folder}/logs",
        f"trainer.max_epochs={EPOCHS}",
        *extra,
    ]


def run_sweep(folder: Path, n_trials: int) -> tuple[float, float]:
    """Wall seconds of a whole sweep process, and the sum of its trials' fit seconds."""
    name = f"overhead{next(counter)}"
    start = time.perf_counter()
    subprocess.run(sweep_command(folder, name, n_trials), check=True, capture_output=True)
    wall = time.perf_counter() - start
    client = open_client(f"sqlite:///{folder}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("digits_cnn")
    trial_runs = f"tags.`optuna.study_name` = '{name}' and metrics.`perf/fit_seconds` > 0"
    runs = client.search_runs([experiment.experiment_id], filter_string=trial_runs)
    if len(runs) != n_trials:
        raise SystemExit(f"sweep {name}: expected {n_trials} trial runs with perf/fit_seconds, found {len(runs)}")
    return wall, sum(run.data.metrics["perf/fit_seconds"] for run in runs)


def sweep_overhead(folder: Path) -> None:
    outside_fit: dict[int, list[float]] = {FEW: [], MANY: []}

    def case(n: int):
        def run() -> float:
            wall, fit = run_sweep(folder, n)
            outside_fit[n].append(wall - fit)
            return wall - fit

        return run

    if not QUICK:  # a smoke run's figures mean nothing: it skips the warm-up
        run_sweep(folder, 1)  # creates the MLflow store, so its one-off migration counts on neither side
    median = interleaved({"few": case(FEW), "many": case(MANY)})
    per_trial = (median["many"] - median["few"]) / (MANY - FEW)
    verdict = "met" if per_trial <= 0.5 else "NOT met"
    print(
        f"sweep overhead: {per_trial:.2f} s per trial (target <= 0.5 s, {verdict})  "
        f"[wall minus fit: {median['few']:.1f} s with {FEW} trials, {median['many']:.1f} s with {MANY}]",
        flush=True,
    )


def trials_per_hour(storage_url: str, name: str) -> float:
    trials = optuna.load_study(study_name=name, storage=open_storage(storage_url)).trials
    # a proposal that repeats a finished trial is told its value in milliseconds: not a trial run
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and not is_repeat(t)]
    span = max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    return len(done) * 3600 / span.total_seconds()


def run_workers(folder: Path, workers: int, walls: dict[str, list[float]], threads: int | None = None) -> float:
    """Trials per hour of one study filled by one command with ``hydra.sweeper.n_jobs=workers``."""
    name = f"parallel{next(counter)}"
    storage = f"journal:///{folder}/{name}.journal"
    thread_override = [f"torch_threads={threads}"] if threads else []
    command = sweep_command(
        folder, name, PARALLEL_TRIALS, f"hydra.sweeper.storage={storage}", f"hydra.sweeper.n_jobs={workers}",
        f"hydra.sweep.dir={folder}/{name}", *thread_override,
    )  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode:
        raise SystemExit(f"sweep failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    walls.setdefault(f"{workers}x{threads}", []).append(time.perf_counter() - start)
    return trials_per_hour(storage, name)


def parallel_sweep(folder: Path) -> None:
    """``n_jobs=2`` (one thread per worker) against ``n_jobs=1`` at torch's default (every core), and at one thread.

    The first is the issue's comparison; on 2 cores a lone worker already keeps both cores busy during its
    fits (intra-op threads), so the second line shows how far the workers themselves scale.
    """
    walls: dict[str, list[float]] = {}
    cases = {
        "one": lambda: run_workers(folder, 1, walls),
        "one_single_thread": lambda: run_workers(folder, 1, walls, threads=1),
        "two": lambda: run_workers(folder, 2, walls),
    }
    if QUICK:
        del cases["one_single_thread"]  # a smoke run: fewer processes
    median = interleaved(cases)
    wall = {key: statistics.median(values) for key, values in walls.items()}
    wall["2x1"] = wall.pop("2xNone")
    what = f"{PARALLEL_TRIALS} trials of {EPOCHS} digits epochs"
    ratio_line(
        "parallel sweep",
        median["two"],
        median["one"],
        ">= 1.7x",
        f"{median['two']:.0f} vs {median['one']:.0f} trials/hour, n_jobs=2 (1 thread each) vs n_jobs=1 (all cores), "
        f"{what}; wall with process start-up {wall['2x1']:.1f} vs {wall['1xNone']:.1f} s",
    )
    if "one_single_thread" not in median:
        return
    ratio_line(
        "parallel sweep (1 thread per worker on both sides)",
        median["two"],
        median["one_single_thread"],
        None,
        f"{median['two']:.0f} vs {median['one_single_thread']:.0f} trials/hour",
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="explab-sweep-bench-") as tmp:
        sweep_overhead(Path(tmp))
        parallel_sweep(Path(tmp))


if __name__ == "__main__":
    main()
