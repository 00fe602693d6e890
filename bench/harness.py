"""What every benchmark here shares: composing explab's config, interleaved repetitions, ratio lines.

Benchmarks never judge absolute seconds: they run A and B alternately in one process run, take the median
of each, and print ``name: 1.02x``. Machine noise hits both sides alike.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from explab.config import config_dir, project_root

if TYPE_CHECKING:
    import optuna

BIN = Path(sys.executable).parent
QUICK = os.environ.get("EXPLAB_BENCH_QUICK") == "1"  # a smoke run: tiny sizes, figures meaningless
REPEATS = int(os.environ.get("EXPLAB_BENCH_REPEATS", 2 if QUICK else 5))


def config(tmp: Path, *overrides: str) -> DictConfig:
    """explab's own composition, writing into ``tmp``; progress bar off, as a benchmark run would have it. Each
    run gets an output folder of its own, as Hydra gives it (explab refuses a new run into another's)."""
    output_dir = tempfile.mkdtemp(prefix="out-", dir=tmp)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"paths.mlruns_dir={tmp}/mlruns",
                f"paths.output_dir={output_dir}",
                f"paths.log_dir={tmp}/logs",
                "trainer.enable_progress_bar=false",
                "log_model=false",
                *overrides,
            ],
        )


def interleaved_samples(cases: dict[str, Callable[[], float]], repeats: int = REPEATS) -> dict[str, list[float]]:
    """Run every case once per round, ``repeats`` rounds; each case's samples in round order.

    The garbage one case leaves behind is collected before the next starts: otherwise the collector walks
    it during whichever case runs next, and the order of the cases alone moved a ratio by 0.15 (digits).
    """
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            gc.collect()
            samples[name].append(case())
    return samples


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


def interleaved(cases: dict[str, Callable[[], float]], repeats: int = REPEATS) -> dict[str, float]:
    """The median of each case's samples from ``interleaved_samples``."""
    return medians(interleaved_samples(cases, repeats))


def round_spread(numerators: list[float], denominators: list[float]) -> str:
    """The middle half of the per-round ratios: each pair ran back to back, so the machine's slow drift
    cancels within a round and what is left is how far one round's ratio can be trusted."""
    ratios = sorted(a / b for a, b in zip(numerators, denominators, strict=True))
    if len(ratios) < 4:
        return f"per-round ratios {ratios[0]:.2f}-{ratios[-1]:.2f}"
    low, _, high = statistics.quantiles(ratios, n=4)
    return f"per-round ratios {low:.2f}-{high:.2f} (middle half of {len(ratios)} rounds)"


def ratio_line(name: str, numerator: float, denominator: float, target: str | None, detail: str = "") -> str:
    line = f"{name}: {numerator / denominator:.2f}x" + (f" (target {target})" if target else "")
    print(f"{line}  [{detail}]" if detail else line, flush=True)
    return line


def wall(command: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds a subprocess takes from start to exit; its output is kept only when it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def digits_sweep(folder: Path, name: str, epochs: int, *args: str) -> tuple[optuna.Study, float]:
    """Run (or resume) ``hparams_search=digits_optuna`` as study ``name`` in ``folder``, every trial for all its
    ``epochs`` (no early stop), with no MLflow record; returns the study and the command's seconds."""
    import optuna

    from explab.sweep.storage import open_storage

    storage = f"journal:///{folder}/{name}.journal"
    command = [
        str(BIN / "explab-train"),
        "-m",
        "hparams_search=digits_optuna",
        "logger=none",
        "hydra.sweeper.mlflow=null",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={name}",
        f"trainer.max_epochs={epochs}",
        "callbacks.early_stopping.patience=100",
        f"paths.log_dir={folder}/logs",
        *args,
    ]
    seconds = wall(command)
    open_storage.cache_clear()  # the command wrote the journal after this process last read it
    return optuna.load_study(study_name=name, storage=open_storage(storage)), seconds


def mnist_available() -> bool:
    """Real MNIST linked under data/ by ``make data``."""
    folder = project_root() / "data" / "mnist"
    return folder.is_dir() and any(folder.iterdir())


def stamp() -> dict[str, str]:
    """When, at which commit, on what machine and with which pinned versions a figure was measured."""
    import platform
    from datetime import date
    from importlib.metadata import version

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=project_root(), check=False).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", "src", "conf", "experiments").strip():
        commit += "-dirty"  # measured on changes not yet committed
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "")
    import torch

    from explab.precision import native_bf16

    # one "AMD EPYC" name covers machines with and without bfloat16 units, which decide mixed precision's speed
    features = f"{torch.backends.cpu.get_cpu_capability()}{', native bfloat16' if native_bf16('cpu') else ''}"
    return {
        "date": date.today().isoformat(),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu or platform.platform()} ({features})",
        "versions": ", ".join(f"{name} {version(name)}" for name in ("torch", "lightning", "scikit-learn")),
    }


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.is_file() else []
