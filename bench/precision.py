"""bf16 autocast + channels-last against 32-bit on mnist_cnn: seconds per epoch and final test accuracy.

    make data && .venv/bin/python bench/precision.py        # part of `make bench`

Seconds per epoch: one-epoch fits of each side, interleaved, median (``perf/fit_seconds``). Final accuracy:
the mnist_cnn recipe (5 epochs) once per side. MLflow off: this compares arithmetic, not the store.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from explab.train import train
from harness import QUICK, config, interleaved, mnist_available, ratio_line

FP32 = ("experiment=mnist_cnn", "logger=none", "trainer.precision=32-true")
BF16 = ("experiment=mnist_cnn", "logger=none", "precision=bf16-mixed", "model.channels_last=true")
ONE_EPOCH = ("trainer.max_epochs=1", "test=false")
if QUICK:
    ONE_EPOCH += ("++trainer.limit_train_batches=20", "++trainer.limit_val_batches=2")


def main() -> None:
    if not mnist_available():
        print("precision (bf16-mixed + channels_last vs 32-true): skipped, real MNIST not found (run `make data`)")
        return
    with tempfile.TemporaryDirectory(prefix="explab-precision-") as folder:
        tmp = Path(folder)
        median = interleaved(
            {
                "fp32": lambda: train(config(tmp, *FP32, *ONE_EPOCH))["perf/fit_seconds"],
                "bf16": lambda: train(config(tmp, *BF16, *ONE_EPOCH))["perf/fit_seconds"],
            }
        )
        full = ("trainer.max_epochs=1", "++trainer.limit_train_batches=20") if QUICK else ()
        accuracy = {
            name: train(config(tmp, *sides, *full))["test/acc"] for name, sides in (("fp32", FP32), ("bf16", BF16))
        }
    ratio_line(
        "precision speed-up (bf16-mixed + channels_last vs 32-true, mnist_cnn)",
        median["fp32"],
        median["bf16"],
        "report",
        f"{median['bf16']:.1f} vs {median['fp32']:.1f} s/epoch; final test/acc {accuracy['bf16']:.4f} vs "
        f"{accuracy['fp32']:.4f} after the recipe's epochs",
    )


if __name__ == "__main__":
    main()
