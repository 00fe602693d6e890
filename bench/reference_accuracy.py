"""Reference experiments on real data over seeds 1-3, beside a linear baseline for the text recipes.

    make data && .venv/bin/python bench/reference_accuracy.py [mnist_cnn fashion_mnist_cnn ...] [--seeds 1 2 3]

Each experiment runs through explab's own ``train(cfg)`` with its recipe unchanged (MLflow off, so the
numbers are the model's, not the store's), once per seed; every seed's result is printed with the median
and range. Text experiments also print a TF-IDF (word uni- and bigrams) + logistic-regression baseline from
scikit-learn, trained and tested on exactly the split explab's data module makes for that seed. Results go
to ``bench/results/reference_accuracy.json`` (rows of experiments not run are kept), and the README's
experiments table is rendered from that file (``reference_table.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from explab.train import train
from harness import config, stamp
from reference_table import RESULTS, write_readme_table

DEFAULT = (
    "mnist_cnn",
    "mnist_fast",
    "fashion_mnist_cnn",
    "rotten_tomatoes_fasttext",
    "rotten_tomatoes_sentiment",
    "digits_cnn",
    "diabetes_mlp",
)
SEEDS = (1, 2, 3)
TARGETS = {"mnist_cnn": 0.990, "fashion_mnist_cnn": 0.910}
TEXT_DATA = ("rotten_tomatoes", "imdb")


def run(experiment: str, seed: int) -> tuple[str, float, float]:
    """(metric name, test value, seconds of the fit) of one seed."""
    with tempfile.TemporaryDirectory(prefix="explab-reference-") as folder:
        cfg = config(Path(folder), f"experiment={experiment}", "logger=none", f"seed={seed}")
        metrics = train(cfg)
    key = "test/acc" if "test/acc" in metrics else "test/r2"
    return key, metrics[key], metrics["perf/fit_seconds"]


def linear_baseline(experiment: str, seed: int) -> float | None:
    """TF-IDF + logistic regression on the experiment's own split for ``seed``; None for non-text data."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    with tempfile.TemporaryDirectory(prefix="explab-reference-") as folder:
        cfg = config(Path(folder), f"experiment={experiment}", "logger=none", f"seed={seed}")
    if not str(cfg.data._target_).endswith(("MovieSnippetsDataModule", "IMDBDataModule")):
        return None
    texts = instantiate(cfg.data, _convert_="partial").read_texts()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2))
    model = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(texts["train"][0]), texts["train"][1])
    return float((model.predict(vectorizer.transform(texts["test"][0])) == texts["test"][1]).mean())


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(experiment: str, seeds: tuple[int, ...]) -> dict[str, Any]:
    values, seconds, baseline = [], [], []
    for seed in seeds:
        metric, value, fit_seconds = run(experiment, seed)
        values.append(value)
        seconds.append(fit_seconds)
        linear = linear_baseline(experiment, seed)
        if linear is not None:
            baseline.append(linear)
        side = f", TF-IDF + logistic regression {linear:.4f}" if linear is not None else ""
        print(f"{experiment} seed {seed}: {metric} = {value:.4f} in {fit_seconds:.0f} s{side}", flush=True)
    row: dict[str, Any] = {
        "metric": metric,
        "seeds": dict(zip(map(str, seeds), values, strict=True)),
        **summary(values),
        "fit_seconds_median": statistics.median(seconds),
    }
    line = f"{experiment}: {metric} median {row['median']:.4f} (range {row['min']:.4f}-{row['max']:.4f})"
    if baseline:
        row["baseline"] = {"name": "TF-IDF uni+bigrams + logistic regression", **summary(baseline)}
        verdict = "at least" if row["median"] >= row["baseline"]["median"] else "BELOW"
        line += f"; baseline median {row['baseline']['median']:.4f}: explab {verdict} the baseline"
    target = TARGETS.get(experiment)
    if target is not None:
        line += f"; target {target:.3f} {'met' if row['median'] >= target else 'NOT met'}"
    print(line, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="*")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": {}}
    # the IMDB side runs where its folders are (they cannot be fetched here)
    experiments = args.experiments or [*DEFAULT, *(["imdb_sentiment"] if Path("data/aclImdb").is_dir() else [])]
    start = time.perf_counter()
    for experiment in experiments:
        results["rows"][experiment] = {**measure(experiment, tuple(args.seeds)), "measured": stamp()}
        # written after each experiment, so an interrupted run keeps what it measured
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        write_readme_table(results)
    print(f"{RESULTS} and the README's experiments table updated ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
