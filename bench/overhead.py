"""Framework overhead, logging cost and start-up, each measured side by side in this one run.

    make data && .venv/bin/python bench/overhead.py        # part of `make bench`

Interleaved repetitions, median of each side, printed as ratios (``framework overhead (digits): 1.08x``):
- framework overhead: explab's ``train(cfg)`` (MLflow on, checkpointing on, progress bar off) against a
  hand-written loop with the same model, tensors, batch size, optimiser, schedule and seed, both validating
  every epoch; seconds per epoch of the whole fit (explab's ``perf/fit_seconds`` / epochs: sanity check,
  checkpoints and logging included). With determinism on, both final validation losses must agree to 1e-5.
  On the default digits experiment (tiny steps: per-step and per-epoch fixed costs show) and on mnist_cnn
  (real MNIST, skipped with a message when ``make data`` has not been run). Where a GPU is visible both sides
  train on it, copying each batch from the in-memory tensors as Lightning does;
- Lightning's own loop: the least LightningModule for the same fit (the backbone, its loss, the optimiser and
  schedule; validation sums loss and correct predictions as the hand-written loop does; no metrics objects,
  logging, checkpoints or sanity check) against the hand-written loop, and explab against it: the first is
  what any Lightning-based framework pays, the second what explab adds (a fourth side of the same rounds);
- logging cost: the same explab fits with ``logger=mlflow`` against ``logger=none`` (a third side of the
  same interleaved rounds);
- start-up: an ``explab-train`` process from its start to its first training step (default experiment,
  MLflow on) against ``python -c "import lightning"``;
- exit: an ``explab-train trainer=fast_dev_run`` process from the start of its exit (its run recorded) to its
  end, against the same process left to the interpreter's own teardown (without ``finish_before_teardown``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from explab.build import build_datamodule, build_model
from explab.train import train
from harness import (
    BIN,
    QUICK,
    REPEATS,
    config,
    interleaved,
    interleaved_samples,
    medians,
    mnist_available,
    ratio_line,
    round_spread,
    wall,
)

DIGITS = ("trainer.deterministic=true", "callbacks.early_stopping.patience=1000", "test=false")
if QUICK:
    DIGITS += ("trainer.max_epochs=3",)
# the hand-written side validates each epoch, so the recipe keeps a validation split here
MNIST = ("experiment=mnist_cnn", "data.val_size=5000", "trainer.max_epochs=1", *DIGITS[:3])
if QUICK:
    MNIST += ("++trainer.limit_train_batches=20", "++trainer.limit_val_batches=2")
AGREE = 1e-5
# a digits fit takes about a second a side, and its per-epoch ratio is the noisiest: three times the rounds
DIGITS_REPEATS = REPEATS if QUICK else 3 * REPEATS
# the callbacks of probe.py, for the explab-train processes of start_up and exit_time
PROBES_ON_PATH = {"PYTHONPATH": str(Path(__file__).parent)}


def explab_fit(tmp: Path, *overrides: str) -> tuple[float, float]:
    """Seconds per epoch of explab's whole fit, and the final validation loss."""
    cfg = config(tmp, *overrides)
    metrics = train(cfg)
    return metrics["perf/fit_seconds"] / cfg.trainer.max_epochs, metrics["val/loss"]


def hand_device(cfg: DictConfig) -> torch.device:
    """Where Lightning would train with this config: a GPU when one is visible and the accelerator allows it."""
    gpu = torch.cuda.is_available() and cfg.trainer.get("accelerator", "auto") in ("auto", "gpu", "cuda")
    return torch.device("cuda" if gpu else "cpu")


def optimizer_and_schedule(cfg: DictConfig, params: Iterable[torch.nn.Parameter]) -> tuple[Any, Any]:
    """The recipe's optimiser and its per-epoch schedule (None without one), as the hand-written loop makes them."""
    optimizer = instantiate(cfg.optimizer)(params=params)
    scheduler = instantiate(cfg.scheduler)(optimizer, T_max=cfg.trainer.max_epochs) if cfg.scheduler else None
    return optimizer, scheduler


def hand_written_fit(cfg: DictConfig) -> tuple[float, float]:
    """The loop a researcher would write: index batches from the same tensors, same seeding order as train()."""
    L.seed_everything(cfg.seed, verbose=False)
    data = build_datamodule(cfg)
    data.setup()
    device = hand_device(cfg)
    model = build_model(cfg).backbone.to(device)
    optimizer, scheduler = optimizer_and_schedule(cfg, model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()
    train_x, train_y = data.splits["train"].x, data.splits["train"].y
    val_x, val_y = data.splits["val"].x, data.splits["val"].y
    batch, eval_batch, epochs = cfg.data.batch_size, cfg.data.eval_batch_size, cfg.trainer.max_epochs
    limit, val_limit = cfg.trainer.get("limit_train_batches"), cfg.trainer.get("limit_val_batches")
    val_n = min(len(val_y), val_limit * eval_batch) if val_limit else len(val_y)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        # what a researcher prints per epoch: train loss, validation loss and accuracy (summed on the device)
        train_loss = torch.zeros((), device=device)
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(cfg.data.seed + epoch))
        for step, i in enumerate(range(0, len(order), batch)):
            if limit and step >= limit:
                break
            idx = order[i : i + batch]
            x, y = train_x[idx].to(device, non_blocking=True), train_y[idx].to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            train_loss += loss.detach() * len(idx)
        if scheduler is not None:
            scheduler.step()
        model.eval()
        val_loss, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        with torch.no_grad():
            for i in range(0, val_n, eval_batch):
                x, y = val_x[i : i + eval_batch].to(device), val_y[i : i + eval_batch].to(device)
                outputs = model(x)
                val_loss += loss_fn(outputs, y) * len(outputs)
                correct += (outputs.argmax(-1) == y).sum()
        history = (float(train_loss) / len(train_y), float(val_loss) / val_n, float(correct) / val_n)
    return (time.perf_counter() - start) / epochs, history[1]


class BareLightning(L.LightningModule):
    """The hand-written loop's work as a LightningModule: no metrics objects, logging or checkpoints."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_model(cfg).backbone
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.train_loss = self.val_sums = None
        self.final_val_loss = float("nan")

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss_fn(self.backbone(x), y)
        summed = loss.detach() * len(y)
        self.train_loss = summed if self.train_loss is None else self.train_loss + summed
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        outputs = self.backbone(x)
        sums = torch.stack([self.loss_fn(outputs, y) * len(y), (outputs.argmax(-1) == y).sum(), y.new_tensor(len(y))])
        self.val_sums = sums if self.val_sums is None else self.val_sums + sums

    def on_validation_epoch_end(self) -> None:
        loss_sum, _correct, count = self.val_sums.tolist()
        self.final_val_loss, self.val_sums, self.train_loss = loss_sum / count, None, None

    def configure_optimizers(self) -> dict:
        optimizer, scheduler = optimizer_and_schedule(self.cfg, self.parameters())
        return {"optimizer": optimizer, **({"lr_scheduler": scheduler} if scheduler else {})}


def bare_lightning_fit(cfg: DictConfig) -> tuple[float, float]:
    """Seconds per epoch of ``Trainer.fit`` on BareLightning, and its final validation loss."""
    L.seed_everything(cfg.seed, verbose=False)
    data = build_datamodule(cfg)
    model = BareLightning(cfg)
    limits = {key: cfg.trainer[key] for key in ("limit_train_batches", "limit_val_batches") if key in cfg.trainer}
    trainer = L.Trainer(
        accelerator="gpu" if hand_device(cfg).type == "cuda" else "cpu",
        devices=1,
        max_epochs=cfg.trainer.max_epochs,
        deterministic=cfg.trainer.deterministic,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **limits,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return (time.perf_counter() - start) / cfg.trainer.max_epochs, model.final_val_loss


def framework_and_logging(
    tmp: Path, label: str, target: str, overrides: tuple[str, ...], repeats: int = REPEATS
) -> None:
    """Four sides, interleaved: the hand-written loop, bare Lightning, explab, and explab with ``logger=none``."""
    cfg = config(tmp, *overrides)
    final: dict[str, float] = {}

    def side(name: str, run: Callable[[], tuple[float, float]]) -> Callable[[], float]:
        def case() -> float:
            seconds, final[name] = run()
            return seconds

        return case

    samples = interleaved_samples(
        {
            "hand": side("hand", lambda: hand_written_fit(cfg)),
            "bare": side("bare", lambda: bare_lightning_fit(cfg)),
            "explab": side("explab", lambda: explab_fit(tmp, *overrides)),
            "nolog": side("nolog", lambda: explab_fit(tmp, *overrides, "logger=none")),
        },
        repeats,
    )
    median = medians(samples)

    def line(name: str, a: str, b: str, target: str | None, detail: str = "") -> None:
        spread = round_spread(samples[a], samples[b])
        ratio_line(name, median[a], median[b], target, f"{detail}; {spread}" if detail else spread)

    gap = abs(final["explab"] - final["hand"])
    line(
        f"framework overhead ({label})",
        "explab",
        "hand",
        target,
        f"{median['explab']:.3f} vs {median['hand']:.3f} s/epoch on {hand_device(cfg).type}; "
        f"final val loss {final['explab']:.6f} vs {final['hand']:.6f}, "
        f"|diff| {gap:.1e} ({'agree' if gap <= AGREE else 'DISAGREE'} to {AGREE:g})",
    )
    line(
        f"  of it Lightning's own loop ({label})",
        "bare",
        "hand",
        None,
        f"a bare LightningModule, {median['bare']:.3f} s/epoch; final val loss {final['bare']:.6f} "
        f"({'agrees' if abs(final['bare'] - final['hand']) <= AGREE else 'DISAGREES'} with the hand-written loop)",
    )
    line(f"  of it explab over bare Lightning ({label})", "explab", "bare", None)
    line(
        f"logging cost ({label})",
        "explab",
        "nolog",
        "<= 1.02x",
        f"{median['explab']:.4f} vs {median['nolog']:.4f} s/epoch, logger=mlflow vs logger=none",
    )


def start_up(tmp: Path) -> None:
    probe = [
        str(BIN / "explab-train"),
        "+callbacks.probe._target_=probe.ExitAtFirstStep",
        f"paths.mlruns_dir={tmp}/mlruns-startup",
        f"paths.log_dir={tmp}/logs",
    ]
    median = interleaved(
        {
            "explab": lambda: wall(probe, env=PROBES_ON_PATH),
            "import": lambda: wall([str(BIN / "python"), "-c", "import lightning"]),
        }
    )
    ratio_line(
        "start-up",
        median["explab"],
        median["import"],
        "<= 1.5x",
        f"{median['explab']:.2f} s from process start to the first training step, "
        f"{median['import']:.2f} s to import lightning",
    )


def exit_time(tmp: Path) -> None:
    stamp = tmp / "exit-started"

    def exit_seconds(teardown: str) -> float:
        command = [
            str(BIN / "explab-train"),
            "trainer=fast_dev_run",
            "+callbacks.probe._target_=probe.StampExitStart",
            f"paths.mlruns_dir={tmp}/mlruns-exit",
            f"paths.log_dir={tmp}/logs",
        ]
        wall(command, env={**PROBES_ON_PATH, "EXPLAB_BENCH_STAMP": str(stamp), "EXPLAB_BENCH_TEARDOWN": teardown})
        return time.time() - float(stamp.read_text())

    median = interleaved({"explab": lambda: exit_seconds("explab"), "interpreter": lambda: exit_seconds("interpreter")})
    ratio_line(
        "exit",
        median["explab"],
        median["interpreter"],
        None,
        f"{median['explab']:.2f} s from the start of the exit to the process's end, "
        f"{median['interpreter']:.2f} s with the interpreter's own teardown",
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="explab-bench-") as folder:
        tmp = Path(folder)
        framework_and_logging(tmp, "digits", "<= 1.25x", DIGITS, DIGITS_REPEATS)
        if mnist_available():
            framework_and_logging(tmp, "mnist_cnn", "<= 1.03x", MNIST)
        else:
            print("framework overhead and logging cost (mnist_cnn): skipped, real MNIST not found (`make data`)")
        start_up(tmp)
        exit_time(tmp)


if __name__ == "__main__":
    main()
