"""Two objectives and warm starts on the digits space, each against its own reference, side by side in one run.

    .venv/bin/python bench/search_features.py            # both parts
    .venv/bin/python bench/search_features.py pareto     # or one: pareto | warm_start

pareto: validation accuracy (maximised) against fit seconds (minimised) over the 24-point digits grid of
``sweep_efficiency.py``. The full grid's Pareto front is the reference; a two-objective TPE search of 9
trials (at most 40 % of the grid's epochs) runs with sampler seeds 0-3. Both fronts are measured against one
reference point, the grid's worst value of each objective a tenth of its range further. Target: the search's
hypervolume at least 90 % of the grid's. Two readings are printed: with the search's own measurements, and
with the grid's measurement of each configuration the search chose. Fit seconds are measured again in every
trial, and the grid's front is made of the lowest of 24 noisy timings, so the first reading also charges a
search for drawing fewer timings; the second asks only whether the search found the front's configurations.

warm_start: for each sampler seed, the shipped 12-trial ``digits_optuna`` search runs first; its best
validation accuracy is the bar. Then a search over a widened space (learning rate 1e-5..1e-1, one more conv
depth) runs cold and, separately, warm-started from the first study, both with a sampler seed the earlier
search did not use (the same seed would replay the earlier search's random first trials, so a cold search
would find the earlier best by repeating its draws, not by searching), in steps of 4 trials up to 24, until one
of its own trained trials reaches the bar, less one validation sample: the warm study holds the earlier best
from the start, and on 270 validation images a search that finds the best region lands within a sample of
it, not always on it. Epochs are counted from the values trials reported to Optuna (one per validation
epoch), so pruned trials count what they ran; warm-started points and repeats count none. Target: the warm
search reaches the bar with at most half the epochs of the cold one.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna

from explab.sweep import is_repeat, is_warm_start
from explab.sweep.pareto import hypervolume, pareto_front, reference_point
from harness import QUICK, digits_sweep

GRID_SPACE = [
    "optimizer.lr=choice(3e-4,1e-3,3e-3,1e-2)",
    "model.backbone.depth=range(1,4)",
    "optimizer=choice(adam,rmsprop)",
]
GRID_SIZE = 4 * 3 * 2
PARETO_TRIALS = 9  # 9 x 10 epochs of the grid's 24 x 10: 37.5 %
EPOCHS = 10
SEEDS = range(4)
WIDE_SPACE = ["optimizer.lr=tag(log, interval(1e-5, 1e-1))", "model.backbone.depth=range(1,5)"]
EARLIER_TRIALS = 12  # digits_optuna's own n_trials
STEP, MAX_TRIALS = 4, 24
VALIDATION_IMAGES = 270  # digits' validation split: 15 % of its 1,797 images
NEW_SEARCH_SEED = 1000  # added to the earlier search's sampler seed for the cold and warm searches
if QUICK:  # a smoke run of the mechanics: a 2-point grid, tiny searches
    GRID_SPACE = ["optimizer.lr=choice(1e-3,3e-3)", "model.backbone.depth=range(1,2)", "optimizer=choice(adam)"]
    GRID_SIZE, PARETO_TRIALS, EPOCHS, SEEDS, EARLIER_TRIALS, STEP, MAX_TRIALS = 2, 2, 1, range(1), 2, 2, 2
TWO_OBJECTIVES = [
    "hydra/sweeper/pruner=none",
    "hydra.sweeper.direction=[maximize,minimize]",
    "hydra.sweeper.metric=[val/acc_best,perf/fit_seconds]",
]


def sweep(folder: Path, name: str, *args: str) -> optuna.Study:
    return digits_sweep(folder, name, EPOCHS, *args)[0]


def trained(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if not (is_repeat(t) or is_warm_start(t))]


def pareto(folder: Path) -> None:
    start = time.perf_counter()
    grid = sweep(
        folder,
        "grid",
        "hydra.sweeper.params=null",
        *GRID_SPACE,
        *TWO_OBJECTIVES,
        "hydra/sweeper/sampler=grid",
        f"hydra.sweeper.n_trials={GRID_SIZE}",
    )
    complete = [t.values for t in grid.trials if t.state.name == "COMPLETE"]
    # the grid's worst of each objective, a tenth of its range further (explab's default rule): one point for
    # every front
    reference = reference_point(grid)
    assert reference is not None, "the grid has complete trials"
    grid_volume = hypervolume(complete, grid, reference)
    grid_epochs = len(trained(grid)) * EPOCHS
    print(
        f"grid: {len(complete)} points, front of {len(pareto_front(grid))}, hypervolume {grid_volume:.4g} "
        f"(reference accuracy {reference[0]:.4f}, fit {reference[1]:.2f} s), {grid_epochs} epochs, "
        f"{time.perf_counter() - start:.0f} s"
    )
    measured = {configuration(t): t.values for t in grid.trials if t.state.name == "COMPLETE"}
    shares, chosen, ratios = [], [], []
    for seed in SEEDS:
        start = time.perf_counter()
        search = sweep(
            folder,
            f"pareto{seed}",
            "hydra.sweeper.params=null",
            *GRID_SPACE,
            *TWO_OBJECTIVES,
            f"hydra.sweeper.sampler.seed={seed}",
            f"hydra.sweeper.n_trials={PARETO_TRIALS}",
        )
        complete = [t for t in search.trials if t.state.name == "COMPLETE"]
        shares.append(hypervolume([t.values for t in complete], search, reference) / grid_volume)
        chosen.append(hypervolume([measured[configuration(t)] for t in complete], search, reference) / grid_volume)
        ratios.append(len(trained(search)) * EPOCHS / grid_epochs)
        print(
            f"two-objective TPE, sampler seed {seed}: front of {len(pareto_front(search))}, hypervolume "
            f"{shares[-1]:.2f} of the grid's ({chosen[-1]:.2f} with the grid's measurements of its "
            f"configurations), {ratios[-1]:.2f}x its epochs, {time.perf_counter() - start:.0f} s"
        )
    print(
        f"pareto hypervolume share: {statistics.median(shares):.2f} (median of {len(shares)} sampler seeds, "
        f"range {min(shares):.2f}-{max(shares):.2f}; target >= 0.90) with {statistics.median(ratios):.2f}x the "
        "grid's epochs (target <= 0.40x)"
    )
    print(
        f"pareto hypervolume share of the configurations chosen, on the grid's measurements: "
        f"{statistics.median(chosen):.2f} (range {min(chosen):.2f}-{max(chosen):.2f})"
    )


def configuration(trial: optuna.trial.FrozenTrial) -> tuple[tuple[str, object], ...]:
    """The trial's point of the grid, comparable across studies."""
    return tuple(sorted(trial.params.items()))


def epochs_to_reach(study: optuna.Study, bar: float) -> int | None:
    """Epochs the study's own trained trials ran until the first of them reached ``bar``; None if none did."""
    epochs = 0
    for trial in trained(study):
        epochs += len(trial.intermediate_values)
        if trial.value is not None and trial.value >= bar:
            return epochs
    return None


def search_until(folder: Path, name: str, bar: float, *args: str) -> tuple[int | None, int]:
    """Grow the study by ``STEP`` trials until a trained trial reaches ``bar``; (epochs to it, trials run)."""
    for n_trials in range(STEP, MAX_TRIALS + 1, STEP):
        study = sweep(folder, name, *args, f"hydra.sweeper.n_trials={n_trials}")
        reached = epochs_to_reach(study, bar)
        if reached is not None:
            return reached, len(trained(study))
    return None, len(trained(study))


def warm_start(folder: Path) -> None:
    ratios: list[float] = []
    for seed in SEEDS:
        start = time.perf_counter()
        seeded = f"hydra.sweeper.sampler.seed={seed}"
        earlier = sweep(folder, f"earlier{seed}", seeded, f"hydra.sweeper.n_trials={EARLIER_TRIALS}")
        best = max(t.value for t in trained(earlier) if t.value is not None)
        # accuracies arrive as float32, whose rounding can put an accuracy one image under the best below
        # `best - 1/270` in float64: count images instead (half an image of slack)
        within_one = round(best * VALIDATION_IMAGES) - 1
        bar = (within_one - 0.5) / VALIDATION_IMAGES
        # sweep overrides on the command line replace the search config's
        wide = [*WIDE_SPACE, f"hydra.sweeper.sampler.seed={NEW_SEARCH_SEED + seed}"]
        cold, cold_trials = search_until(folder, f"cold{seed}", bar, *wide)
        source = f"[{{storage: 'journal:///{folder}/earlier{seed}.journal', study_name: earlier{seed}}}]"
        warm, warm_trials = search_until(folder, f"warm{seed}", bar, *wide, f"hydra.sweeper.warm_start={source}")

        def said(epochs: int | None, trials: int) -> str:
            return f"{epochs} epochs" if epochs is not None else f"not reached in {trials} trials"

        line = (
            f"sampler seed {seed} (new searches {NEW_SEARCH_SEED + seed}): "
            f"bar {within_one / VALIDATION_IMAGES:.4f} (earlier "
            f"{EARLIER_TRIALS}-trial search's best {best:.4f}, less one validation sample); "
            f"cold {said(cold, cold_trials)}, warm-started {said(warm, warm_trials)}"
        )
        if cold is not None and warm is not None:
            ratios.append(warm / cold)
            line += f": {ratios[-1]:.2f}x"
        print(f"{line}, {time.perf_counter() - start:.0f} s")
    if ratios:
        print(
            f"warm start epochs ratio: {statistics.median(ratios):.2f}x (median of the {len(ratios)} of "
            f"{len(SEEDS)} sampler seeds where both reached the bar, range {min(ratios):.2f}-{max(ratios):.2f}; "
            "target <= 0.50x)"
        )
    else:
        print(f"warm start epochs ratio: not measured (no seed where both searches reached the bar in {MAX_TRIALS})")


def main() -> None:
    parts = sys.argv[1:] or ["pareto", "warm_start"]
    with tempfile.TemporaryDirectory(prefix="explab-search-bench-") as tmp:
        for part in parts:
            {"pareto": pareto, "warm_start": warm_start}[part](Path(tmp))


if __name__ == "__main__":
    main()
