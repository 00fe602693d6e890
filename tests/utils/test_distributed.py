"""DDP over 2 CPU processes (gloo) and mixed precision on CPU, through the real console script."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from explab.checkpoints import load_checkpoint
from explab.data import DigitsDataModule
from explab.train import train
from tests.conftest import run_cli, runs_in, tracking_uri_for


def common(tmp_path: Path) -> list[str]:
    return [
        f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs",
        "trainer.enable_progress_bar=false",
    ]


@pytest.mark.slow
def test_ddp_cpu_makes_one_run_with_metrics_over_all_ranks(tmp_path: Path) -> None:
    done = run_cli(
        "explab-train",
        "trainer=ddp_cpu",
        "trainer.max_epochs=2",
        "model.backbone.batch_norm=false",
        "model.channels_last=true",
        "system_metrics_seconds=0.5",
        *common(tmp_path),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert len(runs) == 1, "ranks other than 0 never touch the store"
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["trainer.world_size"] == "2"
    assert len(list((tmp_path / "logs").rglob("last.ckpt"))) == 1, "one output folder, one checkpoint writer"
    client = MlflowClient(tracking_uri_for(tmp_path / "mlruns"))
    samples = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    steps = [m.step for m in samples]
    assert steps and len(steps) == len(set(steps)), f"one sampler on the node, not one per rank: {steps}"
    assert not [k for k in run.data.metrics if k.startswith("system/node_")], "one node: no node prefix"
    # every epoch value is the same on each rank, and Lightning is told so rather than warning once per key
    assert "sync_dist=True" not in done.stdout + done.stderr
    # channels-last parameters before DDP lays out its gradient buckets, not after
    assert "Grad strides do not match bucket view strides" not in done.stderr
    for key in ("perf/epoch_seconds", "perf/samples_per_second", "train/loss", "val/acc_best"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 2, key

    # the logged val/acc of the last epoch is the accuracy over the whole validation split (no batch norm:
    # each rank keeps its own running statistics, and SyncBatchNorm needs GPUs)
    [last] = (tmp_path / "logs").rglob("last.ckpt")
    checkpoint = load_checkpoint(last)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    config = OmegaConf.create(checkpoint["explab"]["config"])
    from explab.build import build_model

    model = build_model(config)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    data: DigitsDataModule = instantiate(config.data)
    data.setup()
    with torch.no_grad():
        predictions = model(data.splits["val"].x).argmax(-1)
    accuracy = (predictions == data.splits["val"].y).float().mean().item()
    history = MlflowClient(tracking_uri_for(tmp_path / "mlruns")).get_metric_history(run.info.run_id, "val/acc")
    assert max(history, key=lambda m: m.step).value == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.slow
def test_ddp_cpu_trains_a_regression_and_draws_its_test_pairs_from_all_ranks(tmp_path: Path) -> None:
    """The predicted-vs-true pairs, gathered over the ranks, failed the test stage of every DDP regression."""
    done = run_cli(
        "explab-train",
        "experiment=diabetes_mlp",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        *common(tmp_path),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "diabetes_mlp")
    assert run.info.status == "FINISHED" and "test/mse" in run.data.metrics
    # the loss is the mean squared error: over the whole split, not a mean of the two ranks' means
    assert run.data.metrics["test/loss"] == pytest.approx(run.data.metrics["test/mse"], rel=1e-5)
    client = MlflowClient(tracking_uri_for(tmp_path / "mlruns"))
    assert "plots/predicted_vs_true.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}


@pytest.mark.slow
def test_a_test_split_smaller_than_the_processes_is_refused_before_training(tmp_path: Path) -> None:
    """Two test samples for three processes left one rank none: once the fit was over, Lightning failed it
    ("TensorBatches within local rank has zero length") and gloo the others ("Connection closed by peer")."""
    done = run_cli(
        "explab-train",
        "experiment=diabetes_mlp",
        "data.test_fraction=0.004",
        "trainer=ddp_cpu",
        "trainer.devices=3",
        *common(tmp_path),
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    said = "the test split holds 2 sample(s), and each of the 3 processes that evaluate it needs one of its own"
    assert f"Error: {said}: give a larger test split (data.test_fraction), or evaluate on 2" in done.stderr
    [run] = runs_in(tmp_path / "mlruns", "diabetes_mlp")
    assert run.info.status == "FAILED" and not [k for k in run.data.metrics if k.startswith("train/")]


@pytest.mark.slow
def test_ddp_cpu_inside_an_optuna_sweep(tmp_path: Path) -> None:
    done = run_cli(
        "explab-train",
        "-m",
        "hparams_search=digits_optuna",
        "hydra.sweeper.n_trials=2",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        *common(tmp_path),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DDP expects same model" not in done.stderr
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    children = [r for r in runs if "optuna.trial_number" in r.data.tags]
    assert len(children) == 2
    assert all(r.info.status == "FINISHED" and r.data.tags["trainer.world_size"] == "2" for r in children)
    sampled = {(r.data.params["optimizer.lr"], r.data.params["model.backbone.depth"]) for r in children}
    assert len(sampled) == 2, "each trial ran with its own sampled values on both ranks"


def test_bf16_mixed_trains_on_cpu(compose_cfg, store: Path) -> None:
    metrics = train(compose_cfg("precision=bf16-mixed", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"))
    [run] = runs_in(store, "digits_cnn")
    assert run.info.status == "FINISHED" and run.data.tags["trainer.precision_effective"] == "bf16-mixed"
    assert metrics["test/acc"] > 0.3


def test_16_mixed_on_cpu_says_what_it_runs_as(compose_cfg, store: Path, caplog: pytest.LogCaptureFixture) -> None:
    train(compose_cfg("trainer.precision=16-mixed", "trainer=fast_dev_run"))
    [run] = runs_in(store, "digits_cnn")
    assert run.data.tags["trainer.precision_effective"] == "bf16-mixed"
    assert "trainer.precision=16-mixed runs as bf16-mixed" in caplog.text
