"""Framework overhead, logging cost and start-up, each measured side by side in this one run.

    .venv/bin/python bench/overhead.py

Interleaved repetitions, median of each, printed as ratios (``framework overhead (digits): 1.08x``):
- framework overhead: explab's ``train(cfg)`` (MLflow on, checkpointing on, progress bar off) against a
  hand-written loop with the same model, tensors, batch size, optimiser and seed, both validating every
  epoch; seconds per epoch;
- logging cost: the same run with ``logger=mlflow`` against ``logger=none``;
- start-up: ``explab-train trainer=fast_dev_run`` (start, one train/val/test step, exit) against
  ``python -c "import lightning"``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from explab.build import build_datamodule, build_model
from explab.config import config_dir
from explab.train import train

REPEATS = 5
EPOCHS = 6


def config(tmp: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"paths.mlruns_dir={tmp}/mlruns",
                f"paths.output_dir={tmp}/out",
                "trainer.enable_progress_bar=false",
                f"trainer.max_epochs={EPOCHS}",
                "callbacks.early_stopping.patience=1000",
                "scheduler=none",
                "log_model=false",
                *overrides,
            ],
        )


def explab_epoch_seconds(tmp: Path, *overrides: str) -> float:
    metrics = train(config(tmp, *overrides))
    return metrics["perf/mean_epoch_seconds"]


def hand_written_epoch_seconds(tmp: Path) -> float:
    cfg = config(tmp)
    torch.manual_seed(cfg.seed)
    data = build_datamodule(cfg)
    data.setup()
    model = build_model(cfg).backbone
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    train_x, train_y = data.splits["train"].x, data.splits["train"].y
    val_x, val_y = data.splits["val"].x, data.splits["val"].y
    batch = cfg.data.batch_size
    seconds = []
    for epoch in range(EPOCHS):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(train_x[idx]), train_y[idx])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            (model(val_x).argmax(-1) == val_y).float().mean().item()
        seconds.append(time.perf_counter() - start)
    return statistics.fmean(seconds)


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    bin_dir = Path(sys.executable).parent
    samples: dict[str, list[float]] = {k: [] for k in ("hand", "explab", "nolog", "startup", "import")}
    with tempfile.TemporaryDirectory(prefix="explab-bench-") as folder:
        tmp = Path(folder)
        for _ in range(REPEATS):
            samples["hand"].append(hand_written_epoch_seconds(tmp))
            samples["explab"].append(explab_epoch_seconds(tmp))
            samples["nolog"].append(explab_epoch_seconds(tmp, "logger=none"))
            samples["startup"].append(
                wall(
                    [str(bin_dir / "explab-train"), "trainer=fast_dev_run", "logger=none", f"paths.log_dir={tmp}/logs"]
                )
            )
            samples["import"].append(wall([sys.executable, "-c", "import lightning"]))
    median = {k: statistics.median(v) for k, v in samples.items()}
    print(
        f"seconds per epoch (digits, median of {REPEATS}): hand-written {median['hand']:.3f}, "
        f"explab {median['explab']:.3f}, explab without MLflow {median['nolog']:.3f}"
    )
    print(f"framework overhead (digits): {median['explab'] / median['hand']:.2f}x")
    print(f"logging cost: {median['explab'] / median['nolog']:.2f}x")
    print(
        f"start-up: {median['startup'] / median['import']:.2f}x "
        f"({median['startup']:.1f} s to a finished fast_dev_run, {median['import']:.1f} s to import lightning)"
    )


if __name__ == "__main__":
    main()
