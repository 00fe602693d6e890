"""The figures explab draws show the values a reader came for: own values on every axis, whole epochs."""

from __future__ import annotations

import warnings

import numpy as np

from explab.tracking.plots import intervals_figure, learning_curves, parallel_coordinates


def _texts(figure) -> set[str]:
    return {text.get_text() for axis in figure.axes for text in axis.texts}


def test_every_parallel_axis_is_labelled_with_its_own_values() -> None:
    figure = parallel_coordinates(
        {
            "optimizer.lr": [0.001, 0.003, 0.01],
            "optimizer": ["adam", "sgd", "adam"],
            "model.depth": [1, 3, 2],
            "test/acc": [0.91, 0.95, 0.99],
            "test/loss": [2.0, 2.0, 2.0],
        },
        "test/acc",
    )
    texts = _texts(figure)
    assert {"adam", "sgd", "2"} <= texts, texts  # categories by name; a constant column shows its one value
    assert {"0.005", "0.01"} <= texts, texts  # the learning rate's own range, not 0-1
    assert {"0.92", "0.96", "0.98"} <= texts and not {"0.2", "0.4", "0.6"} & texts, texts
    [axis] = figure.axes
    assert "2.5" not in texts and "1.5" not in texts, "whole-number params get whole-number labels"
    names = [t.get_text() for t in axis.get_xticklabels()]
    assert names == ["optimizer.lr", "optimizer", "model.depth", "test/acc", "test/loss"]
    assert not len(axis.get_yticks()), "no shared 0-1 axis: each axis has its own values"


def test_learning_curves_tick_whole_epochs() -> None:
    figure = learning_curves({"train/loss": [1.0, 0.5, 0.3], "val/loss": [1.1, 0.6, 0.4]})
    ticks = figure.axes[0].get_xticks()
    assert len(ticks) and np.all(ticks == np.round(ticks)), ticks


def test_a_panel_without_curves_draws_no_legend() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns about a legend with nothing to name
        figure = learning_curves({"train/loss": [1.0, 0.5], "train/acc": []})
    assert [axis.get_legend() is not None for axis in figure.axes] == [True, False]


def test_intervals_figure_names_each_configuration() -> None:
    rows = [
        {"configuration": "lr=0.1", "m mean": 0.9, "m ci_low": 0.88, "m ci_high": 0.92},
        {"configuration": "lr=0.2", "m mean": 0.95, "m ci_low": float("nan"), "m ci_high": float("nan")},
    ]
    figure = intervals_figure(rows, ["m"], 0.95)
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["lr=0.1", "lr=0.2"]


def test_long_configuration_labels_are_wrapped_and_fit_the_figure() -> None:
    """A report of optimizers that differ in several settings: every label is laid out, none is cut."""
    label = "model.backbone.depth=3, optimizer=RMSprop, optimizer.alpha=0.99, optimizer.lr=0.0023141589819278335"
    rows = [
        {"configuration": f"{label}, seed_group={i}", "m mean": 0.9, "m ci_low": 0.8, "m ci_high": 1.0}
        for i in range(5)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when tight_layout cannot fit the labels
        figure = intervals_figure(rows, ["m"], 0.95)
    ticks = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert all(
        max(map(len, t.splitlines())) <= 48 and t.replace("\n", " ") == r["configuration"]
        for t, r in zip(ticks, rows, strict=True)
    )
