"""Reproduce, resume, and how runs end on signals: real subprocesses against a real SQLite store."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from explab.checkpoints import CheckpointError, load_checkpoint
from explab.tracking.store import open_client
from tests.conftest import BIN, run_cli, runs_in, tracking_uri_for


def common(tmp_path: Path) -> list[str]:
    return [
        f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs",
        "trainer.enable_progress_bar=false",
    ]


def history(tmp_path: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    client = open_client(tracking_uri_for(tmp_path / "mlruns"))
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "explab-train"), *args, *common(tmp_path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_points(tmp_path: Path, key: str, count: int, timeout: float = 120) -> str:
    """Poll the store until the only run has ``count`` points of ``key``; return its id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = runs_in(tmp_path / "mlruns", "digits_cnn") if (tmp_path / "mlruns" / "mlflow.db").exists() else []
        if runs and len(history(tmp_path, runs[0].info.run_id, key)) >= count:
            return runs[0].info.run_id
        time.sleep(0.2)
    raise TimeoutError(f"no {count} points of {key} within {timeout} s")


@pytest.mark.slow
def test_reproduce_gives_bit_identical_metrics(tmp_path: Path) -> None:
    first = run_cli(
        "explab-train", "trainer.max_epochs=3", "trainer.deterministic=true", *common(tmp_path), cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr[-2000:]
    [source] = runs_in(tmp_path / "mlruns", "digits_cnn")
    again = run_cli("explab-train", f"reproduce={source.info.run_id}", *common(tmp_path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    [copy] = [r for r in runs if r.info.run_id != source.info.run_id]
    assert copy.data.tags["explab.reproduced_from"] == source.info.run_id
    for key in ("train/loss", "val/acc", "val/loss", "test/acc"):
        assert history(tmp_path, copy.info.run_id, key) == history(tmp_path, source.info.run_id, key), key
    assert "differs from the source run" not in again.stdout + again.stderr


@pytest.mark.slow
def test_sigkilled_run_is_resumed_into_the_same_run(tmp_path: Path) -> None:
    epochs = 5
    # last.ckpt and the metrics written with it after every epoch, so the kill lands between two of them
    proc = start(
        tmp_path,
        f"trainer.max_epochs={epochs}",
        "data.batch_size=4",
        "callbacks.last_checkpoint.min_interval_seconds=0",
    )
    run_id = wait_for_points(tmp_path, "val/acc", 2)
    time.sleep(0.3)  # now somewhere inside a later epoch
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    client = MlflowClient(tracking_uri_for(tmp_path / "mlruns"))
    assert client.get_run(run_id).info.status == "RUNNING", "SIGKILL leaves no chance to close the run"

    resumed = run_cli("explab-train", f"resume={run_id}", *common(tmp_path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "marked KILLED" in resumed.stdout + resumed.stderr, "the orphaned run is noticed before it is continued"
    assert [r.info.run_id for r in runs_in(tmp_path / "mlruns", "digits_cnn")] == [run_id]
    assert client.get_run(run_id).info.status == "FINISHED"
    for key in ("val/acc", "train/loss", "val/acc_best"):
        steps = [step for step, _ in history(tmp_path, run_id, key)]
        assert len(steps) == epochs and len(set(steps)) == epochs and steps == sorted(steps), (key, steps)
    best = [value for _, value in history(tmp_path, run_id, "val/acc_best")]
    assert best == sorted(best), "the best-so-far value survives the resume"


@pytest.mark.slow
def test_sigterm_ends_the_run_killed(tmp_path: Path) -> None:
    proc = start(tmp_path, "trainer.max_epochs=50", "data.batch_size=4")
    run_id = wait_for_points(tmp_path, "val/acc", 1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    status = MlflowClient(tracking_uri_for(tmp_path / "mlruns")).get_run(run_id).info.status
    assert status == "KILLED", stderr[-2000:]


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo owned > /tmp/explab-owned",))


def test_tampered_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "evil": _Payload()}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)
    assert not Path("/tmp/explab-owned").exists()
    done = run_cli("explab-eval", f"ckpt_path={path}", *common(tmp_path)[:2], cwd=tmp_path)
    assert done.returncode != 0 and "cannot be loaded safely" in done.stderr


def test_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match=r"last.ckpt is truncated \(500 bytes\)"):
        load_checkpoint(path)
