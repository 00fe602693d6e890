"""A full grid against TPE + a pruner on the same digits search space, side by side in one run.

    .venv/bin/python bench/sweep_efficiency.py

Prints the best validation accuracy each search found and the epochs it spent; the target is TPE + pruner
within 0.3 points of the grid's best with at most 35 % of its epochs. Epochs are counted from the values
each trial reported to Optuna (one per validation epoch), so pruned trials count what they really ran.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import optuna

from explab.sweep.storage import open_storage
from harness import BIN

SPACE = [
    "optimizer.lr=choice(3e-4,1e-3,3e-3,1e-2)",
    "model.backbone.depth=range(1,4)",
    "optimizer=choice(adam,rmsprop)",
]
GRID_SIZE = 4 * 3 * 2
EPOCHS = 10


def sweep(folder: Path, name: str, *args: str) -> tuple[float, int, int, float]:
    storage = f"journal:///{folder}/{name}.journal"
    command = [
        str(BIN / "explab-train"),
        "-m",
        "hparams_search=digits_optuna",
        "logger=none",
        "hydra.sweeper.mlflow=null",
        "hydra.sweeper.params=null",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={name}",
        f"trainer.max_epochs={EPOCHS}",
        "callbacks.early_stopping.patience=100",
        f"paths.log_dir={folder}/logs",
        *SPACE,
        *args,
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    return study.best_value, epochs, len(study.trials), seconds


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="explab-sweep-bench-") as tmp:
        folder = Path(tmp)
        grid = sweep(
            folder,
            "grid",
            "hydra/sweeper/sampler=grid",
            "hydra/sweeper/pruner=none",
            f"hydra.sweeper.n_trials={GRID_SIZE}",
        )
        tpe = sweep(
            folder,
            "tpe",
            "hydra/sweeper/sampler=tpe",
            "hydra.sweeper.sampler.seed=0",
            "hydra/sweeper/pruner=hyperband",
            "hydra.sweeper.n_trials=10",
        )
    for label, (best, epochs, trials, seconds) in (("grid", grid), ("tpe+hyperband", tpe)):
        print(f"{label}: best val/acc_best {best:.4f}, {epochs} epochs in {trials} trials, {seconds:.0f} s")
    print(f"sweep best gap: {100 * (grid[0] - tpe[0]):+.2f} points (target <= 0.30)")
    print(f"sweep epochs ratio: {tpe[1] / grid[1]:.2f}x (target <= 0.35x)")


if __name__ == "__main__":
    main()
