"""Figures a run leaves in MLflow: learning curves, a confusion matrix, predicted against true values.

Matplotlib is imported here only, with the headless Agg backend, so training never pays for it up front.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explab.utils.logging import get_logger

if TYPE_CHECKING:
    from explab.models import TaskModule
    from explab.tracking import TrackedRun

log = get_logger(__name__)


def _pyplot() -> Any:
    import matplotlib

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
        axis.set_title(name)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


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
    figures = {"learning_curves.png": learning_curves(history)}
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
