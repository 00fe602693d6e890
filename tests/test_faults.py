"""What a hostile first week finds: resumes that would damage a run, torn checkpoints, shared folders, runs
left RUNNING, stores that disagree, unreadable inputs, dead tracking stores and bad values. Each case runs
the real command against a temporary store and checks that nothing is lost and the message names the fix."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from explab.checkpoint_io import AtomicCheckpointIO
from explab.checkpoints import CheckpointError, load_checkpoint, recorded_config
from explab.data import DigitsDataModule
from explab.errors import UsageError
from explab.predict import model_uri_of
from explab.raw_inputs import read_inputs
from explab.sweep.storage import open_storage
from explab.tracking import TrackedRun
from explab.tracking.orphans import close_orphaned_runs
from explab.train import train
from explab.utils.exits import ExitCalled
from tests.conftest import BIN, run_cli, run_reporting_imports, runs_in, tracking_uri_for
from tests.sweep.test_sweeper import load, load_once_written, plain_app_command

ROOT = Path(__file__).resolve().parents[1]
# subprocesses that load this suite's callbacks (``tests.support.callbacks``) import them from the checkout
WITH_TEST_CALLBACKS = {"PYTHONPATH": str(ROOT)}


def paths(tmp_path: Path) -> list[str]:
    return [
        f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs",
        "trainer.enable_progress_bar=false",
    ]


def client_for(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri_for(tmp_path / "mlruns"))


def trained_run(tmp_path: Path, *args: str) -> str:
    """A finished two-epoch digits run with a last.ckpt; returns its run id."""
    done = run_cli(
        "explab-train",
        "trainer.max_epochs=2",
        "callbacks.last_checkpoint.min_interval_seconds=0",
        "log_model=false",
        "log_plots=false",
        *args,
        *paths(tmp_path),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return max(runs_in(tmp_path / "mlruns", "digits_cnn"), key=lambda r: r.info.start_time).info.run_id


def last_checkpoint(tmp_path: Path, run_id: str) -> Path:
    return Path(client_for(tmp_path).get_run(run_id).data.params["paths.output_dir"]) / "checkpoints" / "last.ckpt"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- 1. a resume never damages the run it resumes --------------------------------------------------------
@pytest.mark.slow
def test_a_resume_with_another_model_is_refused_before_the_run_is_touched(tmp_path: Path) -> None:
    run_id = trained_run(tmp_path)
    client = client_for(tmp_path)
    for status in ("FINISHED", "KILLED"):
        client.set_terminated(run_id, status)
        done = run_cli("explab-train", "experiment=diabetes_mlp", f"resume={run_id}", *paths(tmp_path), cwd=tmp_path)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert "would continue a different model or data set" in done.stderr and "model._target_" in done.stderr
        assert client.get_run(run_id).info.status == status, "the run keeps its status"
    # Adam's moments and step counts would be loaded into SGD; read from the checkpoint, so torch is imported,
    # and refused before Lightning is
    argv = ["explab-train", "optimizer=sgd", f"resume={run_id}", *paths(tmp_path)]
    done = run_reporting_imports("explab.train", argv, tmp_path)
    assert done.returncode == 1 and "(optimizer: Adam then, SGD now)" in done.stderr, done.stderr[-3000:]
    assert "imported: ['torch']" in done.stdout, done.stdout[-500:]
    assert client.get_run(run_id).info.status == "KILLED"
    # the run kept only its best epoch by val/acc: its best checkpoint would be picked from the resumed epochs
    done = run_cli("explab-train", "monitor=val/loss", f"resume={run_id}", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "cannot change what picks its best checkpoint" in done.stderr
    assert "(callbacks.model_checkpoint.monitor: val/acc then, val/loss now; callbacks.model_checkpoint.mode: " in (
        done.stderr
    )
    assert f"reproduce={run_id}" in done.stderr and client.get_run(run_id).info.status == "KILLED"


@pytest.mark.slow
def test_a_deleted_run_is_restored_before_it_is_resumed_or_evaluated(tmp_path: Path) -> None:
    """MLflow refuses writes to a run in its trash: the resume failed with its traceback once the fit was done."""
    run_id = trained_run(tmp_path)
    client = client_for(tmp_path)
    client.delete_run(run_id)
    for command in (["explab-train", f"resume={run_id}", "trainer.max_epochs=3"], ["explab-eval", f"run_id={run_id}"]):
        done = run_cli(*command, *paths(tmp_path)[:2], cwd=tmp_path)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
        assert f"run {run_id} is deleted (in the MLflow trash of " in done.stderr
        assert f"mlflow runs restore --run-id {run_id}" in done.stderr and f"reproduce={run_id}" in done.stderr
    assert len(client.get_metric_history(run_id, "val/acc")) == 2 and client.get_run(run_id).info.status == "FINISHED"
    client.restore_run(run_id)
    done = run_cli("explab-train", f"resume={run_id}", "trainer.max_epochs=3", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(client.get_metric_history(run_id, "val/acc")) == 3


@pytest.mark.slow
def test_a_finished_run_resumes_only_to_train_further(tmp_path: Path) -> None:
    run_id = trained_run(tmp_path)
    done = run_cli("explab-train", f"resume={run_id}", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "nothing is left to train" in done.stderr
    assert "trainer.max_epochs=3" in done.stderr, "the message says how to train further"
    client = client_for(tmp_path)
    assert len(client.get_metric_history(run_id, "test/acc")) == 1, "test/ is not logged twice"
    done = run_cli("explab-train", f"resume={run_id}", "trainer.max_epochs=3", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [m.step for m in client.get_metric_history(run_id, "val/acc")]
    assert len(steps) == 3 and steps == sorted(set(steps)), "the third epoch follows the first two"
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_a_run_its_time_limit_ended_resumes_only_with_a_longer_one(tmp_path: Path) -> None:
    """Lightning's Timer counts on from the time the checkpoint holds: the resume stopped again at once, tested
    the run again, and said FINISHED as if it had trained. Given a longer limit, the resume failed in its first
    epoch's end where early stopping was on: the time limit had stopped the fit mid-epoch after validating it,
    and early stopping looked for a validation the resumed process had not run (a patience of 1000 keeps it
    on without ending the run first)."""
    timed = ["+trainer.max_time=00:00:00:01", "trainer.max_epochs=1000", "callbacks.early_stopping.patience=1000"]
    # last.ckpt as the default writes it, at the fit's end: after the validation the time limit's stop ran
    done = run_cli("explab-train", *timed, "log_model=false", "log_plots=false", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = runs_in(tmp_path / "mlruns", "digits_cnn")[0].info.run_id
    client = client_for(tmp_path)
    epochs = len(client.get_metric_history(run_id, "val/acc"))
    assert 0 < epochs < 1000, "the time limit ended it"
    checkpoint = last_checkpoint(tmp_path, run_id)
    before = digest(checkpoint)
    done = run_cli("explab-train", f"resume={run_id}", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"run {run_id} is FINISHED: its time limit ended it after 1 s of training" in done.stderr
    assert "Give a longer +trainer.max_time=DD:HH:MM:SS to train it further" in done.stderr
    assert digest(checkpoint) == before and len(client.get_metric_history(run_id, "test/acc")) == 1
    done = run_cli("explab-train", f"resume={run_id}", "+trainer.max_time=00:00:00:03", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(client.get_metric_history(run_id, "val/acc")) > epochs


@pytest.mark.slow
def test_fewer_epochs_or_steps_than_a_checkpoint_completed_are_refused_and_as_many_resume_to_the_test(
    tmp_path: Path,
) -> None:
    """Fewer epochs: Lightning refused them with a traceback once the fit had begun. Fewer steps: it trained
    nothing and the run said FINISHED with the lower limit. A resume with nothing left to train (a run stopped
    while it tested) skips Lightning's training loop: the run finished with the reason of its earlier ending."""
    run_id = trained_run(tmp_path)  # 2 epochs of 20 steps
    client = client_for(tmp_path)
    client.set_terminated(run_id, "KILLED")
    client.set_tag(run_id, "explab.status_reason", "Terminated by SIGTERM")  # stopped as it tested
    done = run_cli("explab-train", f"resume={run_id}", "trainer.max_epochs=1", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"resume={run_id}: the run has trained 2 epochs, more than trainer.max_epochs=1: give " in done.stderr
    assert "trainer.max_epochs=2 or more, or leave it out to keep the run's own (2)" in done.stderr
    done = run_cli("explab-train", f"resume={run_id}", "+trainer.max_steps=30", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "the run has trained 40 steps, more than trainer.max_steps=30: give trainer.max_steps=40" in done.stderr
    assert "leave it out to keep the run's own (no limit)" in done.stderr
    assert client.get_run(run_id).info.status == "KILLED", "the run keeps its status"
    checkpoint = last_checkpoint(tmp_path, run_id)
    done = run_cli("explab-train", f"ckpt_path={checkpoint}", "trainer.max_epochs=1", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "fitting on from it continues its epoch and step counts, and it has trained 2 epochs" in done.stderr
    assert len(runs_in(tmp_path / "mlruns", "digits_cnn")) == 1, "no run for a fit that cannot start"

    done = run_cli("explab-train", f"resume={run_id}", "+trainer.max_steps=40", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "explab.status_reason" not in run.data.tags, run.data.tags
    assert run.data.tags["explab.resumed_after"] == "KILLED: Terminated by SIGTERM"
    assert run.data.tags["explab.resumed_with"] == "trainer.max_steps=40 (was (none))"


@pytest.mark.slow
def test_an_early_stopped_run_resumed_with_more_patience_stops_at_the_new_patience(tmp_path: Path) -> None:
    """Lightning restores EarlyStopping's patience from the checkpoint: the resume the refusal message advises,
    with a raised patience, stopped again at the old one while the run recorded the new."""
    never_enough = ["callbacks.early_stopping.min_delta=1.0", "trainer.max_epochs=10"]  # no epoch improves by 1.0
    run_id = trained_run(tmp_path, *never_enough, "callbacks.early_stopping.patience=1")
    client = client_for(tmp_path)
    assert len(client.get_metric_history(run_id, "val/acc")) == 2, "stopped one epoch after the first"
    patient = "callbacks.early_stopping.patience=3"
    done = run_cli("explab-train", f"resume={run_id}", *never_enough, patient, *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(client.get_metric_history(run_id, "val/acc")) == 4, "three epochs after the first"


@pytest.mark.slow
def test_a_resume_that_changes_settings_records_them_and_the_next_resume_keeps_them(tmp_path: Path) -> None:
    """MLflow keeps a run's params as first logged: a resume with another learning rate says so on the run,
    and a later resume goes on with that rate instead of falling back to the first one."""
    run_id = trained_run(tmp_path)
    client = client_for(tmp_path)
    changed = ["optimizer.lr=0.01", "trainer.max_epochs=3"]
    done = run_cli("explab-train", f"resume={run_id}", *changed, *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.data.tags["explab.resumed_with"] == "optimizer.lr=0.01 (was 0.003), trainer.max_epochs=3 (was 2)"
    assert json.loads(run.data.tags["explab.resumed_params"]) == {"optimizer.lr": "0.01", "trainer.max_epochs": "3"}
    assert run.data.params["optimizer.lr"] == "0.003", "params stay as first logged"
    resumed = yaml.safe_load(Path(client.download_artifacts(run_id, "config/resumed.yaml", str(tmp_path))).read_text())
    assert resumed["optimizer"]["lr"] == 0.01
    # and it trains at that rate: the cosine of 3 epochs from 0.01, not the checkpoint's 0.003 (Lightning restores
    # the optimizer's settings with its state)
    rates = [m.value for m in sorted(client.get_metric_history(run_id, "lr-Adam"), key=lambda m: m.step)]
    assert rates == pytest.approx([0.003, 0.0015, 0.01 * (1 + math.cos(2 * math.pi / 3)) / 2]), rates

    done = run_cli("explab-train", f"resume={run_id}", "trainer.max_epochs=4", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trained_with = recorded_config(load_checkpoint(last_checkpoint(tmp_path, run_id)), "last.ckpt")["config"]
    assert trained_with["optimizer"]["lr"] == 0.01 and trained_with["trainer"]["max_epochs"] == 4
    assert client.get_run(run_id).data.tags["explab.resumed_with"].endswith("trainer.max_epochs=4 (was 2)")
    assert max(client.get_metric_history(run_id, "lr-Adam"), key=lambda m: m.step).value == pytest.approx(
        0.01 * (1 + math.cos(math.pi * 3 / 4)) / 2
    )
    assert len(client.get_metric_history(run_id, "val/acc")) == 4


@pytest.mark.slow
def test_a_resume_or_a_fit_from_its_checkpoint_that_would_outrun_a_one_cycle_schedule_is_refused(
    tmp_path: Path,
) -> None:
    """A one-cycle schedule resumed to more epochs failed in its first step past the old end ("Tried to step
    21 times"), and turned the FINISHED run FAILED; fitted on from with ``ckpt_path=``, it failed the new run."""
    run_id = trained_run(tmp_path, "scheduler=onecycle")
    checkpoint = last_checkpoint(tmp_path, run_id)
    before = digest(checkpoint)
    done = run_cli("explab-train", f"resume={run_id}", "trainer.max_epochs=4", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "resuming with trainer.max_epochs=4 (was 2) would fail once it passes that end" in done.stderr
    assert f"reproduce={run_id} and those overrides" in done.stderr
    # an epoch's steps are one rank's batches: resumed from 2 ranks on 1, it failed "Tried to step 21 times"
    done = run_cli("explab-train", f"resume={run_id}", "trainer=ddp_cpu", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "resuming with trainer.devices=2 (was 1) would fail" in done.stderr, done.stderr
    run = client_for(tmp_path).get_run(run_id)
    assert run.info.status == "FINISHED" and "explab.resumed_with" not in run.data.tags
    assert digest(checkpoint) == before

    # fitting on from the checkpoint into a new run holds the same schedule: refused before that run exists
    start = [f"ckpt_path={checkpoint}", "trainer.max_epochs=4", *paths(tmp_path)]
    done = run_cli("explab-train", "scheduler=onecycle", *start, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "fitting on with trainer.max_epochs=4 (was 2) would fail once it passes that end" in done.stderr
    # the default cosine would have been handed the one-cycle's state, and set its rate from that step count
    done = run_cli("explab-train", *start, cwd=tmp_path)
    assert done.returncode == 1 and "(scheduler: OneCycleLR then, CosineAnnealingLR now)" in done.stderr, done.stderr
    # weights of another shape: Lightning's strict load failed the new run with a list of state_dict keys
    done = run_cli("explab-train", "scheduler=onecycle", "model.backbone.depth=3", *start, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "its weights do not fit the model this config builds (the checkpoint lacks backbone." in done.stderr
    assert [r.info.run_id for r in runs_in(tmp_path / "mlruns", "digits_cnn")] == [run_id]


@pytest.mark.slow
def test_a_cosine_resumed_to_more_epochs_follows_the_cosine_of_its_new_length(tmp_path: Path) -> None:
    """Restored with the length it was fitted to, the cosine started over past its old end: its learning rate
    rose back to the first value over the added epochs."""
    run_id = trained_run(tmp_path)  # digits_cnn: Adam at 0.003, scheduler=cosine fitted to 2 epochs
    done = run_cli("explab-train", f"resume={run_id}", "trainer.max_epochs=4", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rates = [m.value for m in sorted(client_for(tmp_path).get_metric_history(run_id, "lr-Adam"), key=lambda m: m.step)]
    four_epochs = [0.003 * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(4)]
    assert rates[:2] == pytest.approx([0.003, 0.0015]), "the first two epochs ran the two-epoch cosine"
    assert rates[2:] == pytest.approx(four_epochs[2:]), rates


def test_resume_and_reproduce_together_are_refused(tmp_path: Path) -> None:
    run = "0123456789abcdef0123456789abcdef"
    done = run_cli("explab-train", f"resume={run}", f"reproduce={run}", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Error: resume= and reproduce= were both given" in done.stderr, done.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


@pytest.mark.slow
def test_a_resume_that_fails_before_training_puts_the_run_back_as_it_was(tmp_path: Path) -> None:
    run_id = trained_run(tmp_path)
    client = client_for(tmp_path)
    client.set_terminated(run_id, "KILLED")
    fail = "+callbacks.fail._target_=tests.support.callbacks.FailOnFitStart"
    done = run_cli("explab-train", f"resume={run_id}", fail, *paths(tmp_path), cwd=tmp_path, env=WITH_TEST_CALLBACKS)
    assert done.returncode != 0
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and "failing on purpose" in run.data.tags["explab.resume_failed"]
    # once training goes on, a failure is the resumed run's own
    fail_later = ["+callbacks.fail._target_=tests.support.callbacks.FailAtEpoch", "+callbacks.fail.epoch=3"]
    done = run_cli(
        "explab-train",
        f"resume={run_id}",
        "trainer.max_epochs=5",
        *fail_later,
        *paths(tmp_path),
        cwd=tmp_path,
        env=WITH_TEST_CALLBACKS,
    )
    assert done.returncode != 0
    assert client.get_run(run_id).info.status == "FAILED"


# --- 2. checkpoint writes are atomic on every filesystem ------------------------------------------------
def test_checkpoints_are_written_beside_their_final_name_whatever_tmpdir_is(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "no-such-tmpdir"))  # a $TMPDIR that cannot be used
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"], "no staging file is left"


@pytest.mark.skipif(not Path("/proc/self/io").is_file(), reason="counts the bytes read through /proc/self/io")
def test_a_checkpoint_read_for_its_record_leaves_its_tensors_on_disk(tmp_path: Path) -> None:
    """A resume's checks read the record, the epoch and the shapes: the weights and optimizer state are mapped,
    not read, so a large checkpoint is not read in full once more before Lightning reads it for the fit."""

    def bytes_read() -> int:
        return int(next(line for line in open("/proc/self/io") if line.startswith("rchar")).split()[1])

    weights = {"w": torch.ones(10_000_000)}  # 40 MB
    for name, zipped in (("last.ckpt", True), ("legacy.ckpt", False)):
        torch.save({"state_dict": weights, "epoch": 3}, tmp_path / name, _use_new_zipfile_serialization=zipped)
    before = bytes_read()
    checkpoint = load_checkpoint(tmp_path / "last.ckpt")
    assert checkpoint["epoch"] == 3 and checkpoint["state_dict"]["w"].shape == (10_000_000,)
    assert bytes_read() - before < 4_000_000
    assert float(checkpoint["state_dict"]["w"][-1]) == 1.0, "the tensors are there when used"
    legacy = load_checkpoint(tmp_path / "legacy.ckpt")  # torch.save's old format has no archive to map
    assert torch.equal(legacy["state_dict"]["w"], weights["w"])


def test_the_trainer_writes_checkpoints_atomically(compose_cfg) -> None:
    from explab.build import build_trainer

    cfg = compose_cfg("trainer=cpu")
    assert isinstance(build_trainer(cfg, callbacks=[], loggers=[]).strategy.checkpoint_io, AtomicCheckpointIO)


@pytest.mark.slow
def test_a_full_disk_leaves_the_previous_checkpoint_whole(tmp_path: Path) -> None:
    path = tmp_path / "epoch_000.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(10)}}, path)
    before = digest(path)
    script = f"""
import resource, signal, torch
from explab.checkpoint_io import AtomicCheckpointIO
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
AtomicCheckpointIO().save_checkpoint({{"state_dict": {{"w": torch.zeros(1_000_000)}}}}, {str(path)!r})
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "File too large" in done.stderr
    # not torch's zip writer's "unexpected pos ...", which hides the OSError
    assert f"checkpoint {path} could not be written: File too large in {tmp_path}" in done.stderr
    assert digest(path) == before, "the real name still holds the previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_000.ckpt"], "the partial file is removed"


@pytest.mark.slow
def test_a_truncated_last_checkpoint_is_named_and_the_run_is_untouched(tmp_path: Path) -> None:
    run_id = trained_run(tmp_path)
    checkpoint = last_checkpoint(tmp_path, run_id)
    checkpoint.write_bytes(b"")
    done = run_cli("explab-train", f"resume={run_id}", "trainer.max_epochs=4", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and f"checkpoint {checkpoint} is truncated (0 bytes)" in done.stderr
    assert "Traceback" not in done.stderr
    assert client_for(tmp_path).get_run(run_id).info.status == "FINISHED"


def test_a_truncated_start_checkpoint_is_named_before_the_run_exists(compose_cfg, store: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"cut.ckpt is truncated \(300 bytes\)"):
        train(compose_cfg(f"ckpt_path={checkpoint}", "trainer.max_epochs=1"))
    assert runs_in(store, "digits_cnn") == []


@pytest.mark.parametrize("private", ["file", "folder"])
def test_a_checkpoint_this_account_may_not_read_is_named_before_the_run_exists(
    tmp_path: Path, another_account, private: str
) -> None:
    """A colleague's checkpoint, kept private (mode 600) or in their private folder (700), failed in torch's
    traceback of the PermissionError, or of pathlib's as the checks asked whether the file was there."""
    folder = tmp_path / "colleague"
    folder.mkdir()
    checkpoint = folder / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(10)}}, checkpoint)
    subprocess.run(["chown", "-R", "nobody", str(folder)], check=True)
    (checkpoint if private == "file" else folder).chmod(0o600 if private == "file" else 0o700)
    done = run_cli(
        "explab-train",
        f"ckpt_path={checkpoint}",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        cwd=tmp_path,
        account=another_account,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: checkpoint {checkpoint} cannot be read by this account: Permission denied on {checkpoint}. Its "
        "owner can let you read it (chmod a+r on the file, a+x on its folders), or copy it where you can"
    )
    assert not (tmp_path / "mlruns").exists()


# --- 3. two runs never share an output folder ---------------------------------------------------------
def seeds_started_together(tmp_path: Path, *args: str) -> dict[str, str]:
    """Start one-epoch digits runs of seeds 1 and 2 at once, in two processes; their run ids by seed."""
    command = [str(BIN / "explab-train"), *args, "trainer.max_epochs=1", "log_model=false", "log_plots=false"]
    workers = [
        subprocess.Popen([*command, f"seed={seed}", *paths(tmp_path)], cwd=tmp_path, stderr=subprocess.PIPE)
        for seed in (1, 2)
    ]
    for worker in workers:
        assert worker.wait(timeout=300) == 0
    return {r.data.params["seed"]: r.info.run_id for r in runs_in(tmp_path / "mlruns", "digits_cnn")}


@pytest.mark.slow
def test_runs_started_together_get_their_own_folders_and_resume_refuses_a_foreign_checkpoint(tmp_path: Path) -> None:
    runs = seeds_started_together(tmp_path)
    first, second = last_checkpoint(tmp_path, runs["1"]), last_checkpoint(tmp_path, runs["2"])
    assert first.parent != second.parent
    assert load_checkpoint(first)["explab"]["mlflow_run_id"] == runs["1"]
    second.replace(first)  # what a shared folder did: one run's state under the other's name
    done = run_cli("explab-train", f"resume={runs['1']}", "trainer.max_epochs=2", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and f"belongs to MLflow run {runs['2']}, not to run {runs['1']}" in done.stderr


@pytest.mark.slow
def test_a_new_run_into_a_folder_another_run_holds_is_refused_before_it_exists(tmp_path: Path) -> None:
    """The same hydra.run.dir given twice: the second run overwrote the first's last.ckpt, and the first could no
    longer be resumed ("belongs to MLflow run ...")."""
    folder = tmp_path / "fixed"
    run_id = trained_run(tmp_path, f"hydra.run.dir={folder}")
    before = digest(folder / "checkpoints" / "last.ckpt")
    done = run_cli("explab-train", "trainer.max_epochs=1", f"hydra.run.dir={folder}", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"{folder} already holds the last checkpoint of MLflow run {run_id}: a new run there would" in done.stderr
    assert f"or continue that run with resume={run_id}" in done.stderr
    assert [r.info.run_id for r in runs_in(tmp_path / "mlruns", "digits_cnn")] == [run_id], "no run was created"
    assert digest(folder / "checkpoints" / "last.ckpt") == before
    done = run_cli("explab-train", f"resume={run_id}", "trainer.max_epochs=3", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # a SLURM job requeued into the folder its first attempt wrote (hydra.run.dir=/shared/runs/$SLURM_JOB_ID),
    # after its run had finished: nothing is left to train, and the job ends as its run did
    requeued = {"SLURM_RESTART_COUNT": "1", "SLURM_JOB_ID": "42"}
    again = ["trainer.max_epochs=1", f"hydra.run.dir={folder}", *paths(tmp_path)]
    done = run_cli("explab-train", *again, cwd=tmp_path, env=requeued)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"requeued SLURM job 42: its MLflow run {run_id} had finished; nothing is left to train" in done.stdout
    assert [r.info.run_id for r in runs_in(tmp_path / "mlruns", "digits_cnn")] == [run_id]
    assert len(client_for(tmp_path).get_metric_history(run_id, "val/acc")) == 3


@pytest.mark.slow
def test_a_requeued_job_continues_the_run_its_stopped_attempt_left_in_its_folder(tmp_path: Path) -> None:
    """A preempted SLURM job that SLURM starts again with the same command trained from the start into a second
    MLflow run, over the last.ckpt its stop signal had made the first attempt write."""
    folder = tmp_path / "runs" / "42"
    command = [
        str(BIN / "explab-train"), "trainer.max_epochs=6", "data.batch_size=8", f"hydra.run.dir={folder}",
        "callbacks.last_checkpoint.min_interval_seconds=3600", "callbacks.early_stopping.patience=100",
        "log_model=false", "log_plots=false", *paths(tmp_path),
    ]  # fmt: skip
    # an attempt whose node was lost before it wrote a checkpoint: its run stayed RUNNING, of another host
    lost = TrackedRun.create(
        tracking_uri_for(tmp_path / "mlruns"), "digits_cnn", str(tmp_path / "mlruns" / "artifacts"),
        tags={"hostname": "lost-node", "explab.pid": "1"},
    )  # fmt: skip
    lost.log_params({"paths.output_dir": str(folder)})
    # the attempt SLURM starts again into the folder, still without a checkpoint: told, trained from the start
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    log = tmp_path / "attempt-1.log"
    with log.open("w") as output:
        first = subprocess.Popen(
            command, cwd=tmp_path, env={**env, "SLURM_JOB_ID": "42", "SLURM_RESTART_COUNT": "1"}, stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(folder.glob("checkpoints/epoch_*.ckpt")):
        time.sleep(0.2)  # the best checkpoint: an epoch has validated
    first.send_signal(signal.SIGTERM)  # preempted during its second epoch
    first.wait(timeout=120)
    output = log.read_text()
    assert first.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "SLURM job 42 was requeued (restart 1) into" in output and "it trains from the start" in output
    client = client_for(tmp_path)
    ended = client.get_run(lost.run_id)
    assert ended.info.status == "KILLED", "not left RUNNING for ever"
    assert "was requeued (restart 1) while this run was RUNNING" in ended.data.tags["explab.status_reason"]
    [stopped] = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if r.info.run_id != lost.run_id]
    assert stopped.info.status == "KILLED"
    epochs_done = len(client.get_metric_history(stopped.info.run_id, "val/acc"))
    assert 1 <= epochs_done < 6
    # this attempt's node is lost too, after its checkpoint: the run stays RUNNING, of a host this job cannot ask
    client.update_run(stopped.info.run_id, status="RUNNING")
    client.set_tag(stopped.info.run_id, "hostname", "lost-node")

    done = run_cli("explab-train", *command[1:], cwd=tmp_path, env={"SLURM_JOB_ID": "42", "SLURM_RESTART_COUNT": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"requeued SLURM job 42 continues its MLflow run {stopped.info.run_id} from {folder}" in done.stdout
    run = client.get_run(stopped.info.run_id)
    assert run.info.status == "FINISHED" and len(runs_in(tmp_path / "mlruns", "digits_cnn")) == 2
    assert run.data.tags["explab.resumed_after"].startswith("KILLED: SLURM job 42 was requeued (restart 2)")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert sorted(steps) == sorted(set(steps)) and len(steps) == 6, steps


@pytest.mark.slow
def test_multiruns_started_together_get_their_own_job_folders(tmp_path: Path) -> None:
    """Two multiruns started in the same second shared job folders: one run's last.ckpt replaced the other's."""
    runs = seeds_started_together(tmp_path, "-m")
    first, second = last_checkpoint(tmp_path, runs["1"]), last_checkpoint(tmp_path, runs["2"])
    assert first.parent != second.parent
    assert load_checkpoint(first)["explab"]["mlflow_run_id"] == runs["1"]
    assert load_checkpoint(second)["explab"]["mlflow_run_id"] == runs["2"]


# --- 4. resume= without MLflow cannot rewrite a tracked run -------------------------------------------
@pytest.mark.slow
def test_a_resume_without_mlflow_is_refused(tmp_path: Path) -> None:
    run_id = trained_run(tmp_path)
    checkpoint = last_checkpoint(tmp_path, run_id)
    before = digest(checkpoint)
    done = run_cli(
        "explab-train", f"resume={run_id}", "logger=none", "trainer.max_epochs=4", *paths(tmp_path), cwd=tmp_path
    )
    assert done.returncode == 1 and "logger=none" in done.stderr and "hydra.run.dir" in done.stderr
    assert digest(checkpoint) == before


@pytest.mark.slow
# --- 5. nothing is left RUNNING -------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["seed=-1", "torch_threads=-1"])
def test_values_that_fail_early_leave_no_run(tmp_path: Path, bad: str) -> None:
    done = run_cli("explab-train", bad, *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and bad.split("=")[0] in done.stderr
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == []


def _wait_for_running_trial(tmp_path: Path, study: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        written = load_once_written(tmp_path, study)
        if written is not None and any(t.state == optuna.trial.TrialState.RUNNING for t in written.trials):
            return
        time.sleep(0.2)
    raise TimeoutError("no trial started")


def _plain_sweep_with_parent(tmp_path: Path, study: str) -> list[str]:
    mlflow = f"hydra.sweeper.mlflow={{tracking_uri:'{tracking_uri_for(tmp_path / 'mlruns')}',experiment_name:quad}}"
    return plain_app_command(
        tmp_path, study, "hydra.sweeper.n_trials=5", "sleep=3", mlflow, f"hydra.sweep.dir={tmp_path}/multirun"
    )


@pytest.mark.slow
def test_sigterm_during_a_sweep_fails_the_trial_and_kills_the_parent(tmp_path: Path) -> None:
    worker = subprocess.Popen(
        _plain_sweep_with_parent(tmp_path, "term"), cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    _wait_for_running_trial(tmp_path, "term")
    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=60)
    assert worker.returncode == 128 + signal.SIGTERM
    assert [t.state.name for t in load(tmp_path, "term").trials][-1] == "FAIL"
    [parent] = runs_in(tmp_path / "mlruns", "quad")
    assert parent.info.status == "KILLED"


@pytest.mark.slow
def test_a_parent_run_whose_worker_was_killed_is_closed_by_orphan_cleanup(tmp_path: Path) -> None:
    worker = subprocess.Popen(_plain_sweep_with_parent(tmp_path, "lost"), cwd=tmp_path, stderr=subprocess.PIPE)
    _wait_for_running_trial(tmp_path, "lost")
    worker.kill()
    worker.wait(timeout=60)
    [parent] = runs_in(tmp_path / "mlruns", "quad")
    assert parent.info.status == "RUNNING" and parent.data.tags["hostname"]
    assert close_orphaned_runs(client_for(tmp_path), parent.info.experiment_id) == [parent.info.run_id]


# --- 6. Optuna and MLflow always agree ------------------------------------------------------------------
def sweep_for_test_acc_without_test(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "explab-train",
        "-m",
        "hparams_search=digits_optuna",
        "hydra.sweeper.metric=test/acc",
        "test=false",
        *args,
        *paths(tmp_path),
        f"hydra.sweep.dir={tmp_path}/multirun",
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_a_test_metric_with_test_off_is_refused_before_any_trial(tmp_path: Path) -> None:
    done = sweep_for_test_acc_without_test(tmp_path)
    assert done.returncode == 1 and "never logs with test=false" in done.stderr and "Traceback" not in done.stderr
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == []


@pytest.mark.slow
def test_a_job_without_the_objective_fails_in_both_stores(tmp_path: Path) -> None:
    done = sweep_for_test_acc_without_test(
        tmp_path, "hydra.sweeper.check=null", "hydra.sweeper.n_trials=2", "trainer.max_epochs=1"
    )
    assert done.returncode != 0, "every trial failed, so the sweep stops"
    open_storage.cache_clear()
    storage = open_storage(f"journal:///{tmp_path}/mlruns/optuna/digits_cnn.journal")
    trials = optuna.load_study(study_name="digits_cnn_optuna", storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    children = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
    assert sorted((r.info.status, r.data.tags["optuna.trial_state"]) for r in children) == [("FAILED", "FAIL")] * 2


# --- 7. explab-predict refuses what it cannot read ------------------------------------------------------
DIGITS_RECIPE = DigitsDataModule().input_recipe()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,2,x\n", "empty or non-numeric"),
        ("1,,3\n", "empty or non-numeric"),
        ("", "holds no inputs"),
        ("1,2,3\n", "gives 3 values per input; this model takes 64 numbers per input (shape [8, 8])"),
    ],
)
def test_predict_refuses_csv_it_cannot_read(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text(content)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        read_inputs(path, DIGITS_RECIPE)


def test_predict_names_an_array_file_it_cannot_read(tmp_path: Path) -> None:
    """A .npy cut short, or one of text, failed explab-predict with numpy's traceback."""
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((5, 8, 8)))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UsageError, match=r"x.npy cannot be read as an array of numbers \(Failed to read all data"):
        read_inputs(path, DIGITS_RECIPE)
    np.save(path, np.array([["a"] * 64]))
    with pytest.raises(UsageError, match=r"x.npy cannot be read as an array of numbers \(could not convert"):
        read_inputs(path, DIGITS_RECIPE)


@pytest.mark.parametrize("cut", [40, 120])  # within its header (PIL cannot tell the format), within its pixels
def test_predict_names_an_image_it_cannot_read(tmp_path: Path, cut: int) -> None:
    """An image cut short in a folder of images failed explab-predict with PIL's traceback."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "a.png")
    (folder / "b.png").write_bytes((folder / "a.png").read_bytes()[:cut])
    with pytest.raises(UsageError, match=rf"{folder / 'b.png'} cannot be read as an image \(.*\): save it again"):
        read_inputs(folder, DIGITS_RECIPE)


def test_predict_reads_a_single_row_csv_as_one_input(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text(",".join(["0.5"] * 64) + "\n")
    x, names = read_inputs(path, DIGITS_RECIPE)
    assert x.shape == (1, 8, 8) and names == ["0"]


def test_predict_reads_a_spreadsheets_csv_with_its_byte_order_mark(tmp_path: Path) -> None:
    row = ",".join(["0.5"] * 64) + "\n"
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (row * 2).encode())  # "CSV UTF-8": its first row is data, not a header
    x, names = read_inputs(path, DIGITS_RECIPE)
    assert x.shape == (2, 8, 8) and names == ["0", "1"]
    path.write_bytes((row * 2).encode("utf-16"))  # "Unicode text"
    with pytest.raises(UsageError, match=r"excel.csv is not UTF-8 text \(byte 0xff on line 1\)"):
        read_inputs(path, DIGITS_RECIPE)


def test_predict_reads_a_tables_features_by_their_names(tmp_path: Path) -> None:
    """A header that names the features in another order, beside the target, was read by position."""
    from sklearn.datasets import load_diabetes

    from explab.data.tabular import DiabetesDataModule

    recipe = DiabetesDataModule().input_recipe()
    table = load_diabetes(as_frame=True, scaled=False).frame.head(4)
    in_order = table.drop(columns="target").to_numpy()
    table[["target", *reversed(recipe["columns"])]].to_csv(tmp_path / "shuffled.csv", index=False)
    x, names = read_inputs(tmp_path / "shuffled.csv", recipe)
    assert names == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(x, in_order)
    table.drop(columns=["target", "bmi"]).to_csv(tmp_path / "no_bmi.csv", index=False)
    with pytest.raises(UsageError, match=r"no_bmi.csv has no column bmi \(its header: age, sex, bp, "):
        read_inputs(tmp_path / "no_bmi.csv", recipe)
    # a model logged before its recipe named the columns reads them in the file's order, as it always did
    table[list(reversed(recipe["columns"]))].to_csv(tmp_path / "reversed.csv", index=False)
    x, _ = read_inputs(tmp_path / "reversed.csv", {**recipe, "columns": None})
    np.testing.assert_array_equal(x[:, 0], table["s6"])


def test_predict_reads_one_input_of_the_models_own_shape(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    np.save(tmp_path / "one.npy", load_digits().images[0])  # one 8x8 image, not eight rows of eight values
    x, names = read_inputs(tmp_path / "one.npy", DIGITS_RECIPE)
    assert x.shape == (1, 8, 8) and names == ["0"]


TEXT_RECIPE = {"kind": "text"}  # what read_inputs reads of a text model's recipe; the vocabulary is the model's


def test_predict_reads_a_folder_of_text_files_one_text_each(tmp_path: Path) -> None:
    folder = tmp_path / "pos"  # aclImdb's layout: one review per file, named id_rating.txt
    folder.mkdir()
    (folder / "0_9.txt").write_text("A moving film.<br /><br />Great acting.\n")
    (folder / "1_10.txt").write_text("  \n")  # an empty review is left out, not predicted as ""
    (folder / "2_8.txt").write_text("Funny, and warm.")
    (folder / "urls.lst").write_text("http://example.org\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "3_1.txt").write_text("not entered")
    frame, names = read_inputs(folder, TEXT_RECIPE)
    assert names == ["0_9.txt", "2_8.txt"]
    assert list(frame["text"]) == ["A moving film.<br /><br />Great acting.", "Funny, and warm."]
    (folder / "0_9.txt").write_text("")
    (folder / "2_8.txt").unlink()
    with pytest.raises(UsageError, match=r"holds no \.txt file with text"):
        read_inputs(folder, TEXT_RECIPE)


@pytest.mark.parametrize("name", ["reviews.txt", "reviews.csv", "folder"])
def test_predict_refuses_texts_that_are_not_utf8_with_the_fix(tmp_path: Path, name: str) -> None:
    latin1 = "text\nun film très réussi\n".encode("latin1")
    path = tmp_path / name
    if name == "folder":
        path.mkdir()
        (path / "0_1.txt").write_bytes(latin1)
    else:
        path.write_bytes(latin1)
    with pytest.raises(
        UsageError, match=r"is not UTF-8 text \(byte 0xe8 on line 2\): save it as UTF-8, for instance iconv"
    ):
        read_inputs(path, TEXT_RECIPE)


@pytest.mark.parametrize(
    ("name", "content", "recipe", "message"),
    [
        ("reviews.txt", " \n\n", "text", "reviews.txt holds no text: give one review per line"),
        ("reviews.csv", "text,label\n ,1\n", "text", "reviews.csv holds no text in its text column"),
        ("reviews.npy", None, "text", "this is a text model; give a .txt file with one text per line, a .csv"),
        ("gone.csv", None, "digits", "gone.csv does not exist; give a .npy array, a numeric .csv or a folder"),
        ("pixels.json", "[]", "digits", "pixels.json: give a .npy array, a numeric .csv or a folder of images"),
        ("folder/notes.md", "", "digits", "folder holds no images (.bmp, .gif, .jpeg, .jpg, .pgm, .png)"),
        ("folder/digit.png", None, "table", "this model takes inputs of shape [10], not images"),
    ],
)
def test_predict_refuses_inputs_its_model_does_not_take_with_what_it_does(
    tmp_path: Path, name: str, content: str | None, recipe: str, message: str
) -> None:
    from PIL import Image

    from explab.data.tabular import DiabetesDataModule

    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    if name.endswith(".png"):
        Image.new("L", (8, 8)).save(path)
    elif content is not None:
        path.write_text(content)
    elif name.endswith(".npy"):
        np.save(path, np.zeros((2, 8, 8)))
    recipes = {"text": TEXT_RECIPE, "digits": DIGITS_RECIPE, "table": DiabetesDataModule().input_recipe()}
    given = path.parent if name.startswith("folder/") else path
    with pytest.raises(UsageError, match=re.escape(message)):
        read_inputs(given, recipes[recipe])


def test_predict_takes_a_run_id_for_the_model_that_run_logged() -> None:
    run = "8f0cdca934b14e639828fc71ee9525cd"
    assert model_uri_of(run) == model_uri_of(f"runs:/{run}") == model_uri_of(f"runs:/{run}/") == f"runs:/{run}/model"
    for kept in (f"runs:/{run}/model", f"runs:/{run}/other", "models:/digits/2", "models:/digits@best", "digits"):
        assert model_uri_of(kept) == kept


def test_predict_names_a_missing_input_before_it_fetches_the_model(tmp_path: Path) -> None:
    done = run_cli(
        "explab-predict", "model_uri=runs:/0123/model", "input=nosuch.npy", f"paths.mlruns_dir={tmp_path}", cwd=tmp_path
    )
    assert done.returncode == 1 and "Error: input=nosuch.npy does not exist" in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
def test_a_registered_model_that_does_not_load_is_answered_with_the_registry(logged_run: str, store: Path) -> None:
    """models:/NAME/7 or models:/NAME@champion that the registry lacks was answered with how a run logs a model."""
    client = MlflowClient(tracking_uri_for(store))
    client.create_registered_model("digits")
    client.create_model_version("digits", f"runs:/{logged_run}/model", run_id=logged_run)
    client.set_registered_model_alias("digits", "prod", "1")
    for uri, advice in [
        ("models:/digits/7", "Registered model 'digits' has versions 1 and aliases @prod (version 1): give models:/"),
        ("models:/digits@champion", "Registered model 'digits' has versions 1 and aliases @prod (version 1)"),
        (
            "models:/digit/1",
            "The registry holds no model 'digit'; it holds: digits. explab-train registered_model_name=",
        ),
    ]:
        done = run_cli("explab-predict", f"model_uri={uri}", f"input={store}", f"paths.mlruns_dir={store}", cwd=store)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert f"Error: model_uri={uri} cannot be loaded" in done.stderr and advice in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
def test_predict_cli_names_the_bad_input_without_a_traceback(logged_run: str, store: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("1,2,3\n")
    done = run_cli(
        "explab-predict",
        f"model_uri=runs:/{logged_run}/model",
        f"input={tmp_path / 'bad.csv'}",
        f"output={tmp_path / 'out.csv'}",
        f"paths.mlruns_dir={store}",
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "gives 3 values per input; this model takes 64 numbers per input" in done.stderr
    assert not (tmp_path / "out.csv").exists()
    assert "Downloading artifacts" not in done.stderr, "no progress bar per file of the model"


@pytest.mark.parametrize(
    ("command", "argument", "message"),
    [
        ("explab-eval", "run_id={run}", "no MLflow run {run} in sqlite:///"),
        ("explab-train", "reproduce={run}", "no MLflow run {run} in sqlite:///"),
        ("explab-predict", "model_uri=runs:/{run}/model input=.", "model_uri=runs:/{run}/model cannot be loaded"),
    ],
)
def test_a_run_the_store_does_not_hold_is_named(tmp_path: Path, command: str, argument: str, message: str) -> None:
    """A run id from another store, or mistyped: one message naming it and the store, no traceback."""
    run = "0123456789abcdef0123456789abcdef"
    MlflowClient(tracking_uri_for(tmp_path / "mlruns")).search_experiments()  # a store, without that run
    done = run_cli(command, *argument.format(run=run).split(), f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert message.format(run=run) in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "Seed set to" not in done.stdout + done.stderr, "a wrong run id is all the command says"


@pytest.mark.parametrize(
    "arguments",
    [
        ["explab-eval", "run_id=0123456789abcdef0123456789abcdef"],
        ["explab-train", "resume=0123456789abcdef0123456789abcdef"],
        ["explab-report", "experiment_name=digits_cnn"],
    ],
)
def test_a_store_that_does_not_exist_is_named_and_not_created(tmp_path: Path, arguments: list[str]) -> None:
    """A mistyped store, or a command started where no run was recorded: MLflow created an empty store there,
    tables and folder, and the command answered that it held no such run or experiment."""
    done = run_cli(*arguments, f"paths.mlruns_dir={tmp_path}/typo", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"There is no MLflow store at {tmp_path}/typo/mlflow.db: nothing was recorded there." in done.stderr
    assert not (tmp_path / "typo").exists()


def test_predict_from_a_run_without_a_model_says_how_to_log_one(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri_for(tmp_path / "mlruns"))
    run = client.create_run(client.create_experiment("trials")).info.run_id  # as a sweep trial: no model
    client.set_terminated(run)
    done = run_cli(
        "explab-predict", f"model_uri=runs:/{run}/model", "input=.", f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "A run logs its model with log_model=true" in done.stderr
    assert ".. " not in done.stderr, "MLflow's message is quoted as a clause, without its own full stop"


@pytest.mark.slow
# --- 8. a broken tracking store is named within seconds ------------------------------------------------
@pytest.mark.parametrize(
    ("store", "shown"),
    [
        ("http://lab:s3cret@127.0.0.1:9", "http://lab:***@127.0.0.1:9"),
        # MLflow retried a database that refused it for nearly two minutes, then raised its traceback
        ("postgresql://lab:s3cret@127.0.0.1:9/mlflow", "postgresql://lab:***@127.0.0.1:9/mlflow"),
    ],
)
def test_an_unreachable_server_is_named_at_once_without_its_password(tmp_path: Path, store: str, shown: str) -> None:
    start = time.monotonic()
    done = run_cli("explab-train", *paths(tmp_path), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": store})
    assert time.monotonic() - start < 60
    assert done.returncode == 1 and f"{shown} does not answer" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "s3cret" not in done.stdout + done.stderr


@pytest.mark.slow
def test_an_mlflow_file_store_is_refused_with_the_command_that_moves_its_runs_into_a_store_explab_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow 2 kept runs in a folder (``MLFLOW_TRACKING_URI=./mlruns``); MLflow 3 refuses one, and the
    command ended in MLflow's traceback."""
    folder = tmp_path / "mlflow2"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's opt-out, to write such a store here
    old = MlflowClient(f"file://{folder}")
    earlier = old.create_run(old.create_experiment("digits_cnn")).info.run_id
    old.log_metric(earlier, "val/acc", 0.5)
    old.set_terminated(earlier)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")

    done = run_cli("explab-train", *paths(tmp_path), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"file://{folder}"})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"The MLflow tracking store file://{folder} is a folder of files" in done.stderr
    move = re.search(r"\(mlflow migrate-filestore (.+?)\)", done.stderr)
    assert move, done.stderr[-2000:]
    subprocess.run([str(BIN / "mlflow"), "migrate-filestore", *move.group(1).split(), "--no-progress"], check=True)

    trained = run_cli(
        "explab-train", f"paths.mlruns_dir={folder}", "trainer.max_epochs=1", "log_model=false", cwd=tmp_path
    )  # as the message goes on: MLFLOW_TRACKING_URI unset, the folder given
    assert trained.returncode == 0, trained.stderr[-2000:]
    runs = {run.info.run_id: run for run in runs_in(folder, "digits_cnn")}
    assert len(runs) == 2 and runs[earlier].data.metrics["val/acc"] == 0.5, "the earlier run moved along"


@pytest.mark.slow
def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database")
    done = run_cli(
        "explab-train", *paths(tmp_path), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/notes.db"}
    )
    assert done.returncode == 1 and "is not a database" in done.stderr


def test_a_store_cut_short_is_named_and_left_as_it_is(tmp_path: Path) -> None:
    """A store copied partway failed every command with sqlite3's traceback of a malformed disk image."""
    from explab.tracking.store import TrackingStoreError, open_client

    client = open_client(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    client.create_run(client.create_experiment("digits_cnn", artifact_location=str(tmp_path / "artifacts")))
    original = tmp_path / "mlruns" / "mlflow.db"
    with sqlite3.connect(original) as connection:  # the write-ahead log into the file, as a copy would take it
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database = tmp_path / "copy" / "mlflow.db"
    database.parent.mkdir()
    database.write_bytes(original.read_bytes()[: original.stat().st_size * 9 // 10])  # the copy stopped there
    uri = f"sqlite:///{database}"
    before = digest(database)
    with pytest.raises(TrackingStoreError) as refused:
        open_client(uri)
    assert str(refused.value).startswith(
        f"The MLflow store {uri} is damaged (database disk image is malformed): {database} was cut short"
    )
    assert "restore it from a backup, or record into another store with paths.mlruns_dir=FOLDER" in str(refused.value)
    assert digest(database) == before


@pytest.mark.slow
def test_another_applications_database_is_left_untouched(tmp_path: Path) -> None:
    database = tmp_path / "optuna.db"
    optuna.create_study(storage=f"sqlite:///{database}", study_name="theirs")
    before = digest(database)
    done = run_cli("explab-train", *paths(tmp_path), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{database}"})
    assert done.returncode == 1 and "another application's database" in done.stderr
    assert digest(database) == before and not Path(f"{database}-wal").exists()
    tables = {r[0] for r in sqlite3.connect(database).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "experiments" not in tables


@pytest.mark.slow
@pytest.mark.parametrize(
    ("storage", "said"),
    [
        # port 9: nothing listens there
        (
            "postgresql://lab:s3cret@127.0.0.1:9/studies",
            "the study's storage postgresql://lab:***@127.0.0.1:9/studies cannot be opened",
        ),
        # SQLAlchemy's traceback, "Could not parse SQLAlchemy URL from given URL string"
        ("mystudy", "the study's storage 'mystudy' is neither a journal file nor a database URL: give a file ending"),
    ],
    ids=["server-down", "no-scheme"],
)
def test_a_study_storage_that_does_not_answer_is_named_without_its_password(tmp_path: Path, storage, said) -> None:
    start = time.monotonic()
    done = run_cli(
        "explab-train",
        "-m",
        "hparams_search=digits_optuna",
        f"hydra.sweeper.storage={storage}",
        *paths(tmp_path),
        cwd=tmp_path,
    )
    assert time.monotonic() - start < 60
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"Error: {said}" in done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == [], "no parent run for a study that could not open"


@pytest.mark.slow
# --- 9. user errors read as one message, not a traceback -----------------------------------------------
@pytest.mark.parametrize(
    ("bad", "allowed"),
    [
        ("optimizer.lr=abc", "optimizer.lr must be a number > 0"),
        ("trainer.max_epochs=abc", "trainer.max_epochs must be null, -1 (no limit) or an integer >= 1"),
        ("data.batch_size=0", "data.batch_size must be an integer >= 1"),
        ("trainer.precision=bf17", "trainer.precision must be auto, 32-true, bf16-mixed"),
        ("monitor=val/accuracy", "monitor must be a metric this task logs: one of train/acc"),
        ("scheduler=cosine scheduler.T_max=0", "scheduler.T_max must be null (the run's max_epochs) or an integer"),
        ("monitor_mode=maxx", "monitor_mode='maxx' is not valid: monitor_mode must be min, max or auto"),
        ("experiment_name=", "experiment_name='' is not valid: experiment_name must be a non-empty name"),
        ("log_model=maybe", "log_model='maybe' is not valid: log_model must be true or false"),
        ("system_metrics_seconds=0", "system_metrics_seconds must be null (off) or a number of seconds > 0"),
    ],
)
def test_a_bad_value_is_one_message_naming_the_key_before_any_run(tmp_path: Path, bad: str, allowed: str) -> None:
    done = run_cli("explab-train", *bad.split(), *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert allowed in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists(), "no run exists for a config that is wrong"
    full = run_cli("explab-train", *bad.split(), *paths(tmp_path), cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert "Traceback" in full.stderr and "ConfigError" in full.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sweep", [[], ["-m", "hparams_search=digits_optuna"]], ids=["run", "local-sweep"])
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (["trainer=gpu"], "trainer.accelerator=gpu with trainer.devices=1 needs 1 GPU, and"),
        (["experiment=mnist_cnn", "data.data_dir=."], "train-images-idx3-ubyte[.gz] not found in"),
        (["ckpt_path=gone/epoch_009.ckpt"], "ckpt_path=gone/epoch_009.ckpt: no such file here"),
    ],
    ids=["no-gpu", "no-data", "no-checkpoint"],
)
def test_what_this_machine_lacks_is_one_message_before_any_run(tmp_path: Path, sweep, setting, message) -> None:
    no_gpus = {"CUDA_VISIBLE_DEVICES": ""}  # torch sees no GPU on any machine
    done = run_cli("explab-train", *sweep, *setting, *paths(tmp_path), cwd=tmp_path, env=no_gpus)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.count(message) == 1, done.stderr[-2000:]
    assert not (tmp_path / "mlruns" / "mlflow.db").exists(), "no run exists for a config this machine cannot train"


@pytest.mark.slow
@pytest.mark.parametrize("code", [3, 0])
def test_a_run_whose_code_calls_sys_exit_ends_failed_saying_where(compose_cfg, store: Path, code: int) -> None:
    """A run whose callback called ``sys.exit(3)`` ended KILLED, as if stopped on purpose, and one that called
    ``sys.exit(0)`` FINISHED, though neither had trained its epochs."""
    exiting = [
        "+callbacks.exit._target_=tests.support.callbacks.ExitInTrial", "+callbacks.exit.trial=-1",
        "+callbacks.exit.doomed=-1", f"+callbacks.exit.code={code}",
    ]  # fmt: skip
    with pytest.raises(ExitCalled, match=rf"^the job's code called sys.exit\({code}\) in on_train_epoch_start \("):
        train(compose_cfg(*exiting, "trainer.max_epochs=3", "trainer.enable_progress_bar=false"))
    [run] = runs_in(store, "digits_cnn")
    assert run.info.status == "FAILED"
    assert run.data.tags["explab.status_reason"].startswith(f"ExitCalled: the job's code called sys.exit({code})")
    assert "tests/support/callbacks.py" in run.data.tags["explab.status_reason"], "where the code exits"


def _requeue_then_exit(signum: int, frame: object) -> None:
    """What submitit's handler of a preemption does once it has requeued the job."""
    sys.exit(-1)


@pytest.mark.slow
def test_a_preemption_handler_that_exits_stops_the_run_with_its_checkpoint(compose_cfg, store: Path) -> None:
    """submitit requeues a preempted job from its SIGUSR2 handler, then calls ``sys.exit(-1)``. That exit was
    taken for the job's code exiting: the run ended FAILED, and submitit could take the job's error for its
    result in place of the requeued attempt's (a SLURM multirun failed the job it had requeued)."""
    signalled = [
        "+callbacks.signal._target_=tests.support.callbacks.SignalAtEpochEnd", "+callbacks.signal.signum=SIGUSR2",
        "callbacks.last_checkpoint.min_interval_seconds=3600",
    ]  # fmt: skip
    before = signal.signal(signal.SIGUSR2, _requeue_then_exit)  # as submitit installs it, before the job runs
    try:
        with pytest.raises(SystemExit) as stopped:
            train(compose_cfg(*signalled, "trainer.max_epochs=3", "trainer.enable_progress_bar=false"))
    finally:
        signal.signal(signal.SIGUSR2, before)
    assert type(stopped.value) is SystemExit and stopped.value.code == -1, "submitit's exit, as it raised it"
    [run] = runs_in(store, "digits_cnn")
    assert run.info.status == "KILLED", run.data.tags.get("explab.status_reason")
    assert run.data.tags["explab.status_reason"] == "Stopped by SIGUSR2, whose handler called sys.exit(-1)"
    last = load_checkpoint(Path(run.data.params["paths.output_dir"]) / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 1, "written at the signal, for the requeued attempt to go on from"


def test_a_multirun_with_one_bad_job_stops_before_any_job_trains(tmp_path: Path) -> None:
    """Hydra's basic sweeper would train the good job, then end with the bad one's traceback."""
    done = run_cli("explab-train", "-m", "optimizer.lr=0.01,-1", "trainer.max_epochs=1", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "Error: job 1 (optimizer.lr=-1 trainer.max_epochs=1 " in done.stderr
    assert "optimizer.lr=-1 is not valid: optimizer.lr must be a number > 0" in done.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists(), "no job trained"


@pytest.mark.slow
def test_a_multirun_trains_every_job_past_a_diverged_one_and_names_it_at_the_end(tmp_path: Path) -> None:
    """The diverged job's error ended the multirun as a traceback, as if explab had a bug."""
    done = run_cli(
        "explab-train", "-m", "optimizer=sgd", "optimizer.lr=1e12,0.01", "trainer.max_epochs=1", *paths(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "Error: 1 of 2 jobs of this multirun failed; the other 1 finished:\n" in done.stderr
    assert "  job 0 (optimizer.lr=1000000000000.0): training loss became nan at epoch 0" in done.stderr
    runs = {r.info.run_name: r.info.status for r in runs_in(tmp_path / "mlruns", "digits_cnn")}
    assert runs == {"optimizer.lr=1000000000000.0": "FAILED", "optimizer.lr=0.01": "FINISHED"}


@pytest.mark.slow
def test_a_multirun_whose_jobs_meet_a_bug_still_shows_its_traceback(tmp_path: Path) -> None:
    done = run_cli(
        "explab-train", "-m", "seed=1,2", "+callbacks.fail._target_=tests.support.callbacks.FailOnFitStart",
        *paths(tmp_path), cwd=tmp_path, env=WITH_TEST_CALLBACKS,
    )  # fmt: skip
    assert done.returncode == 1 and "Error: 2 of 2 jobs of this multirun failed" in done.stderr, done.stderr[-2000:]
    assert "Traceback" in done.stderr and "failing on purpose before training" in done.stderr


@pytest.mark.slow
def test_a_value_syntax_error_is_reported_as_a_value_error(tmp_path: Path) -> None:
    done = run_cli("explab-train", "optimizer.lr=interval(1e-3)", *paths(tmp_path), cwd=tmp_path)
    assert done.returncode != 0
    assert "Bad value in 'optimizer.lr=interval(1e-3)'" in done.stderr and "Did you mean" not in done.stderr


@pytest.mark.slow
def test_an_unexpected_error_keeps_its_traceback(tmp_path: Path) -> None:
    done = run_cli(
        "explab-train",
        "+callbacks.fail._target_=tests.support.callbacks.FailOnFitStart",
        "trainer.max_epochs=1",
        *paths(tmp_path),
        cwd=tmp_path,
        env=WITH_TEST_CALLBACKS,
    )
    assert done.returncode != 0 and "failing on purpose before training" in done.stderr
    assert "Traceback" in done.stderr or "HYDRA_FULL_ERROR" in done.stderr
