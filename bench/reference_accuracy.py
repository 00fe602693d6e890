"""Reference experiments on real data: test accuracy and seconds per epoch, as the README table reports.

    make data && .venv/bin/python bench/reference_accuracy.py [mnist_cnn fashion_mnist_cnn ...]

Runs each experiment through explab's own ``train(cfg)`` with its recipe unchanged (MLflow off, so the
numbers are the model's, not the store's). Targets: mnist_cnn >= 99.2 %, fashion_mnist_cnn >= 91 %.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from explab.train import train
from harness import config

DEFAULT = ("mnist_cnn", "fashion_mnist_cnn", "rotten_tomatoes_sentiment", "digits_cnn", "diabetes_mlp")
TARGETS = {"mnist_cnn": 0.992, "fashion_mnist_cnn": 0.91}


def run(experiment: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="explab-reference-") as folder:
        cfg = config(Path(folder), f"experiment={experiment}", "logger=none")
        start = time.perf_counter()
        metrics = train(cfg)
        total = time.perf_counter() - start
    key = "test/acc" if "test/acc" in metrics else "test/r2"
    return {
        "metric": key,
        "value": metrics[key],
        "epochs": cfg.trainer.max_epochs,
        "s_per_epoch": metrics["perf/fit_seconds"] / cfg.trainer.max_epochs,
        "total_s": total,
    }


def main(experiments: list[str]) -> None:
    for experiment in experiments or DEFAULT:
        result = run(experiment)
        target = TARGETS.get(experiment)
        verdict = (
            "" if target is None else ("  (target met)" if result["value"] >= target else f"  (BELOW target {target})")
        )
        print(
            f"{experiment}: {result['metric']} = {result['value']:.4f} after up to {result['epochs']} epochs, "
            f"{result['s_per_epoch']:.1f} s/epoch, {result['total_s']:.0f} s total{verdict}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
