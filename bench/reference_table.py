"""The README's experiments table, rendered from ``bench/results/reference_accuracy.json``.

    .venv/bin/python bench/reference_table.py        # rewrite the README table from the results file

The recipe columns are written here; every number comes from the file ``reference_accuracy.py`` writes, so
the table cannot drift from what was measured (``tests/bench/test_reference_table.py`` checks it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "reference_accuracy.json"
README = ROOT / "README.md"
START, END = "<!-- reference-table: start (bench/reference_table.py) -->", "<!-- reference-table: end -->"

# experiment -> (data, model, recipe); rows without results say why
RECIPES: dict[str, tuple[str, str, str]] = {
    "digits_cnn": (
        "scikit-learn digits, stratified 70/15/15",
        "2 conv blocks + BN, dense 128",
        "Adam 3e-3, cosine, 20 epochs",
    ),
    "mnist_cnn": (
        "MNIST IDX, all 60k train / 10k test",
        "Conv32-Pool-Conv64-Pool-Conv64-Dense64-Dense10, Keras init",
        "Adam 1e-3, batch 64, 5 epochs",
    ),
    "mnist_fast": (
        "MNIST IDX (55k/5k/10k)",
        "the same CNN + batch norm, channels-last",
        "AdamW one-cycle 4e-3, batch 256, precision=auto (bf16-mixed where native), 3 epochs",
    ),
    "fashion_mnist_cnn": (
        "Fashion-MNIST IDX, all 60k train / 10k test",
        "same CNN, Keras init",
        "Adam 1e-3, 10 epochs",
    ),
    "cifar10_cnn": ("CIFAR-10 batches, 10% held out", "same CNN for 3x32x32", "Adam 1e-3, 10 epochs"),
    "cifar10_lenet": ("CIFAR-10", "LeNet conv6-conv16-fc120-fc84", "SGD 1e-3, momentum 0.9, batch 4, 2 epochs"),
    "cifar10_widecnn": ("CIFAR-10", "conv64-conv128-fc1000", "SGD 1e-3, momentum 0.9, 10 epochs"),
    "imdb_sentiment": ("aclImdb folders", "embedding, BiGRU, attention pooling", "Adam 1e-3, 5 epochs"),
    "rotten_tomatoes_fasttext": (
        "10,605 review snippets scored by people, sign-binarised, 70/10/20",
        "bag of words and hashed bigrams (fastText style) + a score per n-gram, sparse gradients",
        "LazyAdam 5e-3, 15 epochs, token dropout 0.3",
    ),
    "rotten_tomatoes_sentiment": ("the same snippets", "embedding, BiGRU, attention pooling", "Adam 2e-3, 8 epochs"),
    "diabetes_mlp": ("scikit-learn diabetes, standardised on train", "MLP 2x64, MSE", "Adam 3e-3, up to 60 epochs"),
}
NOT_MEASURED = {
    "cifar10_cnn": "not measured (no CIFAR-10 offline)",
    "cifar10_lenet": "not measured (no CIFAR-10 offline)",
    "cifar10_widecnn": "not measured (no CIFAR-10 offline)",
    "imdb_sentiment": "not measured (no aclImdb offline)",
}


def _cell(row: dict[str, Any]) -> str:
    name = row["metric"].removeprefix("test/")
    return f"{name} {row['median']:.4f} ({row['min']:.4f}-{row['max']:.4f})"


def render(results: dict[str, Any]) -> str:
    """The Markdown table: recipe columns, then median (range) over seeds and the linear baseline's median."""
    rows = results.get("rows", {})
    lines = [
        "| experiment | data | model | recipe | test result, median (range) over seeds 1-3 | linear baseline "
        "| fit, median |",
        "|---|---|---|---|---|---|---|",
    ]
    for experiment, (data, model, recipe) in RECIPES.items():
        row = rows.get(experiment)
        result = _cell(row) if row else NOT_MEASURED.get(experiment, "not measured yet")
        baseline = _cell({"metric": "acc", **row["baseline"]}) if row and "baseline" in row else "-"
        name = f"`{experiment}`" + (" (default)" if experiment == "digits_cnn" else "")
        fit = f"{row['fit_seconds_median']:.0f} s" if row else "-"
        lines.append(f"| {name} | {data} | {model} | {recipe} | {result} | {baseline} | {fit} |")
    return "\n".join(lines)


def readme_table(text: str) -> str:
    """The table as it stands in the README (between the markers)."""
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def write_readme_table(results: dict[str, Any]) -> None:
    text = README.read_text()
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    README.write_text(f"{before}{START}\n{render(results)}\n{END}{after}")


if __name__ == "__main__":
    write_readme_table(json.loads(RESULTS.read_text()))
