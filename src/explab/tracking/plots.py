"""Figures a run leaves in MLflow: learning curves, a confusion matrix, predicted against true values.

Matplotlib is imported here only, with the headless Agg backend, so training never pays for it up front.
"""

from __future__ import annotations

import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explab.utils.logging import get_logger

if TYPE_CHECKING:
    from explab.models import TaskModule
    from explab.tracking import TrackedRun

log = get_logger(__name__)
LABEL_WIDTH = 48  # characters per line of a configuration's label in the report's figure


def _pyplot() -> Any:
    import sys

    import matplotlib

    # a notebook's inline backend draws the figures this module returns; anywhere else nothing is shown
    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: dict[str, Sequence[float]]) -> Any:
    """Loss and the first other metric, train against val, per epoch."""
    plt = _pyplot()
    names = sorted({key.split("/", 1)[1] for key in history if "/" in key})
    panels = ["loss", *[n for n in names if n in ("acc", "mse", "r2")][:1]]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for axis, name in zip(axes[0], panels, strict=True):
        for split in ("train", "val"):
            values = history.get(f"{split}/{name}", [])
            if len(values):
                axis.plot(range(len(values)), values, marker="o", markersize=3, label=split)
        axis.set_xlabel("epoch")
        integer_ticks(axis.xaxis)
        axis.set_title(name)
        if axis.get_lines():  # a panel with no curve has nothing to name, and matplotlib would warn
            axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def integer_ticks(axis: Any) -> None:
    """Ticks only at whole numbers on ``axis`` (epochs, steps): an epoch 0.5 does not exist."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def parallel_coordinates(columns: dict[str, Sequence[Any]], color_by: str) -> Any:
    """One vertical axis per column, each labelled with its own values; a line per row, coloured by ``color_by``.

    Numbers are placed by their own range (a few rounded values are written beside the axis), anything else
    by category, one label per category: scaling every axis to 0-1 without labels would hide the values a
    reader came for.
    """
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    names = list(columns)
    rows = len(next(iter(columns.values()), []))
    placed: dict[str, np.ndarray] = {}
    labels: dict[str, list[tuple[float, str]]] = {}
    for name, values in columns.items():
        numbers = _as_numbers(values)
        if numbers is not None:
            low, high = float(np.nanmin(numbers)), float(np.nanmax(numbers))
            span = (high - low) or 1.0
            placed[name] = (numbers - low) / span if high > low else np.full(rows, 0.5)
            whole = bool(np.all(numbers[~np.isnan(numbers)] % 1 == 0))  # depth 2.5 does not exist
            ticks = [t for t in MaxNLocator(nbins=4, integer=whole).tick_values(low, high) if low <= t <= high]
            ticks = ticks or [low]
            labels[name] = [((t - low) / span if high > low else 0.5, f"{t:.4g}") for t in ticks]
        else:
            categories = sorted({str(v) for v in values})
            position = {
                c: (i / (len(categories) - 1) if len(categories) > 1 else 0.5) for i, c in enumerate(categories)
            }
            placed[name] = np.array([position[str(v)] for v in values])
            labels[name] = [(p, c) for c, p in position.items()]
    score = _as_numbers(columns[color_by])
    shade = placed[color_by] if score is not None else np.linspace(0, 1, rows)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.7 * len(names)), 4.2))
    for row in range(rows):
        axis.plot(range(len(names)), [placed[n][row] for n in names], color=plt.cm.viridis(shade[row]), alpha=0.8)
    for x, name in enumerate(names):
        axis.axvline(x, color="black", linewidth=0.8)
        for y, text in labels[name]:
            axis.text(x + 0.03, y, text, fontsize=7, va="center", ha="left")
    axis.set_xticks(range(len(names)), names, rotation=20)
    axis.set_yticks([])
    axis.set_xlim(-0.2, len(names) - 0.5)
    axis.set_title(f"parallel coordinates (colour: {color_by})")
    figure.tight_layout()
    return figure


def _as_numbers(values: Sequence[Any]) -> np.ndarray | None:
    try:
        return np.array([float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        return None


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str] | None = None) -> Any:
    plt = _pyplot()
    n = len(matrix)
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    figure, axis = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.55 * n))
    axis.imshow(matrix, cmap="Blues")
    for i in range(n):
        for j in range(n):
            axis.text(
                j,
                i,
                int(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if matrix[i, j] > matrix.max() / 2 else "black",
            )
    axis.set_xticks(range(n), names, rotation=45)
    axis.set_yticks(range(n), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("test confusion matrix")
    figure.tight_layout()
    return figure


def predicted_vs_true_figure(predicted: np.ndarray, true: np.ndarray) -> Any:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.scatter(true, predicted, s=10, alpha=0.6)
    low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    axis.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("true")
    axis.set_ylabel("predicted")
    axis.set_title("test: predicted vs true")
    figure.tight_layout()
    return figure


def log_run_plots(run: TrackedRun, model: TaskModule) -> None:
    """Every figure the task can draw, as PNGs under ``plots/`` of the run; a failure only warns."""
    plt = _pyplot()
    curves = (name for name in model.metric_names() if name.startswith(("train/", "val/")))
    keys = sorted(name for name in curves if name != model.best_metric_name)
    history: dict[str, Sequence[float]] = {
        key: [m.value for m in sorted(run.client.get_metric_history(run.run_id, key), key=lambda m: m.step)]
        for key in keys
    }
    # a run without a logged epoch (fast_dev_run, a test-only run) has no curves to draw
    figures = {"learning_curves.png": learning_curves(history)} if any(map(len, history.values())) else {}
    figures.update(model.test_figures())
    with tempfile.TemporaryDirectory(prefix="explab-plots-") as folder:
        for name, figure in figures.items():
            try:
                path = Path(folder) / name
                figure.savefig(path, dpi=100)
                run.log_file(path, "plots")
            except Exception as err:
                log.warning("plot %s not logged: %s", name, err)
            finally:
                plt.close(figure)


def intervals_figure(rows: Sequence[dict[str, Any]], metrics: Sequence[str], confidence: float) -> Any:
    """Each configuration's mean with its confidence interval, one panel per metric (a report's rows)."""
    plt = _pyplot()
    # a configuration's label lists every setting that sets it apart: wrapped, and the figure sized to it
    names = [textwrap.fill(row["configuration"], width=LABEL_WIDTH) for row in rows]
    lines = max((name.count("\n") + 1 for name in names), default=1)
    longest = max((len(line) for name in names for line in name.splitlines()), default=0)
    size = (4.5 * len(metrics) + 0.07 * longest, 1.2 + len(names) * (0.2 + 0.18 * lines))
    figure, axes = plt.subplots(1, len(metrics), figsize=size, squeeze=False, sharey=True)
    for axis, metric in zip(axes[0], metrics, strict=True):
        means = np.array([row[f"{metric} mean"] for row in rows], dtype=float)
        low = np.array([row[f"{metric} ci_low"] for row in rows], dtype=float)
        high = np.array([row[f"{metric} ci_high"] for row in rows], dtype=float)
        # a group with one run has no interval: its mean is drawn alone
        errors = np.nan_to_num(np.vstack([means - low, high - means]), nan=0.0)
        axis.errorbar(means, range(len(names)), xerr=errors, fmt="o", capsize=4)
        axis.set_title(metric)
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(names)), names)
    axes[0][0].set_ylim(len(names) - 0.5, -0.5)  # each label its own slot, the first on top
    figure.suptitle(f"mean and {confidence:.0%} confidence interval over seeds", fontsize=10)
    figure.tight_layout()
    return figure


def save_figure(figure: Any, path: Path) -> Path:
    """Write ``figure`` as a PNG at ``path`` and free it."""
    try:
        figure.savefig(path, dpi=100)
    finally:
        _pyplot().close(figure)
    return path
