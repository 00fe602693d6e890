"""A full grid against explab's own search recipe on the same digits space, side by side in one run.

    .venv/bin/python bench/sweep_efficiency.py

The search is ``hparams_search=digits_optuna`` as it ships (TPE, median pruner, 12 trials), run with several
sampler seeds: one search is a draw, and on this space a single seed says little. The grid has one point on
top, and one validation sample is 0.37 points of accuracy, so "within 0.3 points" means finding that point.
Prints each search's best validation accuracy and the epochs it spent; the target is the grid's best within
0.3 points with at most 35 % of its epochs. Epochs are counted from the values each trial reported to Optuna
(one per validation epoch), so pruned trials count what they really ran, and proposals that repeat a
finished trial (told its value, see ``hydra.sweeper.skip_repeats``) count none.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from explab.sweep import is_repeat
from harness import QUICK, digits_sweep

SPACE = [
    "optimizer.lr=choice(3e-4,1e-3,3e-3,1e-2)",
    "model.backbone.depth=range(1,4)",
    "optimizer=choice(adam,rmsprop)",
]
GRID_SIZE = 4 * 3 * 2
EPOCHS = 10
SEARCH_TRIALS = 12  # digits_optuna's own n_trials
SEEDS = range(4)
if QUICK:  # a smoke run of the mechanics: a 2-point grid, one short search
    SPACE = ["optimizer.lr=choice(1e-3,3e-3)", "model.backbone.depth=range(1,2)", "optimizer=choice(adam)"]
    GRID_SIZE, EPOCHS, SEARCH_TRIALS, SEEDS = 2, 1, 2, range(1)


def sweep(folder: Path, name: str, *args: str) -> tuple[float, int, int, float]:
    study, seconds = digits_sweep(folder, name, EPOCHS, "hydra.sweeper.params=null", *SPACE, *args)
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    trained = sum(not is_repeat(t) for t in study.trials)  # repeats were told a value instead
    return study.best_value, epochs, trained, seconds


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
        # the recipe's own sampler and pruner; only the seed changes
        n_trials = f"hydra.sweeper.n_trials={SEARCH_TRIALS}"
        searches = [sweep(folder, f"search{seed}", f"hydra.sweeper.sampler.seed={seed}", n_trials) for seed in SEEDS]
    best, grid_epochs, trials, seconds = grid
    print(f"grid: best val/acc_best {best:.4f}, {grid_epochs} epochs in {trials} trials, {seconds:.0f} s")
    gaps, ratios = [], []
    for seed, (found, epochs, trials, seconds) in zip(SEEDS, searches, strict=True):
        gaps.append(100 * (best - found))
        ratios.append(epochs / grid_epochs)
        print(
            f"digits_optuna (TPE + median pruner), sampler seed {seed}: best val/acc_best {found:.4f} "
            f"({gaps[-1]:+.2f} points), {epochs} epochs ({ratios[-1]:.2f}x) in {trials} trained trials, {seconds:.0f} s"
        )
    within = sum(gap <= 0.3 for gap in gaps)
    print(
        f"sweep best gap: {statistics.median(gaps):+.2f} points (median of {len(gaps)} sampler seeds; "
        f"{within} of {len(gaps)} within 0.30; target <= 0.30)"
    )
    median_ratio = statistics.median(ratios)
    print(f"sweep epochs ratio: {median_ratio:.2f}x (median of {len(ratios)} sampler seeds; target <= 0.35x)")


if __name__ == "__main__":
    main()
