"""Reproduce, resume, and how runs end on signals: real subprocesses against a real SQLite store."""

from __future__ import annotations

import ast
import itertools
import logging
import os
import pickle
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from explab.checkpoints import CheckpointError, load_checkpoint
from explab.errors import UsageError
from explab.monitor_mode import settle_modes
from explab.reproduce import (
    check_fingerprint,
    check_hardware,
    compare_with_source,
    config_from_recorded_run,
    recorded_overrides,
)
from explab.tracking import TrackedRun
from explab.tracking.params import flatten_params, recordable
from explab.tracking.store import open_client
from tests.conftest import BIN, ROOT, as_from_a_terminal, root_env, run_cli, runs_in, tracking_uri_for
from tests.support.terminal import Terminal


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
        preexec_fn=as_from_a_terminal,
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
    assert copy.info.run_name == f"{source.info.run_name} (reproduced)", "the UI's list says what it reproduces"
    for key in ("train/loss", "val/acc", "val/loss", "test/acc"):
        assert history(tmp_path, copy.info.run_id, key) == history(tmp_path, source.info.run_id, key), key
    assert "differs from the source run" not in again.stdout + again.stderr
    assert copy.data.tags["explab.reproduced_metrics"] == "identical"
    said = again.stdout + again.stderr
    assert f"reproduced run {source.info.run_id}: its " in said and "to the bit" in said, said[-2000:]
    assert "Downloading artifacts" not in said

    # the reproduction records what it ran, not just reproduce=ID: reproducing it trains the same config again
    chained = run_cli("explab-train", f"reproduce={copy.info.run_id}", *common(tmp_path), cwd=tmp_path)
    assert chained.returncode == 0, chained.stderr[-2000:]
    [last] = [
        r
        for r in runs_in(tmp_path / "mlruns", "digits_cnn")
        if r.info.run_id not in (source.info.run_id, copy.info.run_id)
    ]
    assert last.data.tags["explab.reproduced_metrics"] == "identical"
    assert last.info.run_name == copy.info.run_name, "one suffix"
    assert history(tmp_path, last.info.run_id, "test/acc") == history(tmp_path, source.info.run_id, "test/acc")


def test_a_reproduction_recorded_the_old_way_is_reproduced_with_its_sources_overrides(store: Path) -> None:
    """Reproductions recorded before they kept their source's overrides hold only ``reproduce=SOURCE``."""
    client = MlflowClient(tracking_uri_for(store))
    experiment = client.create_experiment("digits_cnn", artifact_location=str(store / "artifacts"))
    source, old, older = (client.create_run(experiment).info.run_id for _ in range(3))
    client.log_text(
        source, "- trainer.max_epochs=3\n- optimizer.lr=0.01\n- hydra.job.chdir=false\n", "config/overrides.yaml"
    )
    client.log_text(old, f"- reproduce={source}\n- optimizer.lr=0.02\n", "config/overrides.yaml")
    client.log_text(older, f"- reproduce={old}\n- seed=7\n", "config/overrides.yaml")
    assert recorded_overrides(tracking_uri_for(store), older) == ["trainer.max_epochs=3", "optimizer.lr=0.02", "seed=7"]


def test_a_reproduction_that_moved_names_the_metrics_that_differ(tmp_path: Path, caplog) -> None:
    uri = tracking_uri_for(tmp_path / "mlruns")
    client = MlflowClient(uri)
    experiment = client.create_experiment("digits_cnn")
    source, copy = (client.create_run(experiment).info.run_id for _ in range(2))
    client.log_batch(
        source, [Metric(k, v, 0, 0) for k, v in {"test/acc": 0.97, "val/loss": 0.1, "perf/fit_seconds": 3.0}.items()]
    )
    client.log_batch(
        copy, [Metric(k, v, 0, 0) for k, v in {"test/acc": 0.98, "val/loss": 0.1, "perf/fit_seconds": 2.0}.items()]
    )
    client.set_terminated(source)  # a source that finished: its last values are final ones
    with caplog.at_level(logging.WARNING, logger="explab.reproduce"):
        compare_with_source(TrackedRun(uri, copy), source)
    assert client.get_run(copy).data.tags["explab.reproduced_metrics"] == "differ: test/acc", "timings are not compared"
    assert "1 of 2 final metrics differ from the source's: test/acc 0.97 then, 0.98 now\n" in caplog.text

    # the source trained on another kind of CPU: the warning says so, as the likely reason
    client.set_tag(source, "hardware.cpu_capability", "AVX2")
    client.set_tag(copy, "hardware.cpu_capability", "AVX512")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="explab.reproduce"):
        compare_with_source(TrackedRun(uri, copy), source)
    assert (
        "test/acc 0.97 then, 0.98 now (it trained on other hardware: hardware.cpu_capability AVX2 then, AVX512 now)"
        in caplog.text
    )

    # reproduce=ID seed=7 is expected to move: said, not warned of, with the settings that differ
    client.log_param(source, "seed", "42")
    client.log_param(copy, "seed", "7")
    for run_id in (source, copy):
        client.log_param(run_id, "paths.output_dir", f"/logs/{run_id}")  # where a run keeps its files: no setting
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="explab.reproduce"):
        compare_with_source(TrackedRun(uri, copy), source)
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert "test/acc 0.97 then, 0.98 now (it trained with other settings: seed 42 then, 7 now) (it" in caplog.text
    assert client.get_run(copy).data.tags["explab.reproduced_metrics"] == "differ: test/acc; other settings: seed"


@pytest.mark.parametrize("ended", ["KILLED", "FAILED", "RUNNING"])
def test_a_reproduction_of_a_run_that_did_not_finish_is_compared_where_it_stopped(
    tmp_path: Path, caplog, ended: str
) -> None:
    """A source stopped after two epochs of four has no final values: set against the reproduction's final
    ones, every metric would differ however exactly it was reproduced. Each is compared at the source's last
    step."""
    uri = tracking_uri_for(tmp_path / "mlruns")
    client = MlflowClient(uri)
    experiment = client.create_experiment("digits_cnn")
    source, same, moved, shorter = (client.create_run(experiment).info.run_id for _ in range(4))
    accuracies = [0.5, 0.6, 0.7, 0.8]
    client.log_batch(source, [Metric("val/acc", a, 0, step) for step, a in enumerate(accuracies[:2])])
    client.log_batch(source, [Metric("perf/fit_seconds", 3.0, 0, 1)])
    client.log_batch(same, [Metric("val/acc", a, 0, step) for step, a in enumerate(accuracies)])
    client.log_batch(moved, [Metric("val/acc", a + (step == 1) * 0.01, 0, step) for step, a in enumerate(accuracies)])
    client.log_batch(shorter, [Metric("val/acc", 0.5, 0, 0), Metric("val/acc", 0.7, 0, 2)])
    if ended != "RUNNING":  # RUNNING: a source still training
        client.set_terminated(source, ended)

    with caplog.at_level(logging.INFO, logger="explab.reproduce"):
        compare_with_source(TrackedRun(uri, same), source)
    assert client.get_run(same).data.tags["explab.reproduced_metrics"] == "identical"
    state = "is RUNNING" if ended == "RUNNING" else f"ended {ended}"
    reached = f"at the last steps the source reached (up to step 1; it {state})"
    assert f"reproduced run {source}: its 1 metrics {reached} are the source's, to the bit" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="explab.reproduce"):
        compare_with_source(TrackedRun(uri, moved), source)
    assert client.get_run(moved).data.tags["explab.reproduced_metrics"] == "differ: val/acc"
    assert f"1 of 1 metrics {reached} differ from the source's: val/acc 0.6 then, 0.61 now" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="explab.reproduce"):
        compare_with_source(TrackedRun(uri, shorter), source)
    assert client.get_run(shorter).data.tags["explab.reproduced_metrics"] == "none recorded at the source's steps"
    assert f"it {state}, and this run logged none of its metrics at the steps it reached" in caplog.text


def test_a_reproduction_of_a_run_that_logged_no_metric_says_nothing_was_compared(tmp_path: Path, caplog) -> None:
    """A source that stopped before its first metric (a full disk at the start) was said to be reproduced
    "to the bit", by all 0 of its metrics."""
    uri = tracking_uri_for(tmp_path / "mlruns")
    client = MlflowClient(uri)
    experiment = client.create_experiment("digits_cnn")
    source, copy = (client.create_run(experiment).info.run_id for _ in range(2))
    client.log_batch(copy, [Metric("test/acc", 0.97, 0, 0)])
    with caplog.at_level(logging.INFO, logger="explab.reproduce"):
        compare_with_source(TrackedRun(uri, copy), source)
    assert client.get_run(copy).data.tags["explab.reproduced_metrics"] == "none recorded"
    assert f"reproduced run {source}: it recorded no final metrics to compare with" in caplog.text
    assert "to the bit" not in caplog.text


def test_a_reproduction_on_other_data_or_hardware_says_so_and_the_same_says_nothing(caplog) -> None:
    source = {"data.fingerprint": "abc", "hardware.cpu_capability": "AVX2", "hardware.torch_threads": "1"}
    with caplog.at_level(logging.WARNING, logger="explab.reproduce"):
        check_fingerprint(source, "abc")
        check_hardware(source, {"hardware.cpu_capability": "AVX2", "hardware.torch_threads": "1"})
    assert not caplog.text
    with caplog.at_level(logging.WARNING, logger="explab.reproduce"):
        check_fingerprint(source, "xyz")
        check_hardware(source, {"hardware.cpu_capability": "AVX512", "hardware.torch_threads": "1"})
    assert "data fingerprint differs from the source run: abc then, xyz now: the data changed" in caplog.text
    assert "hardware differs from the source run: hardware.cpu_capability AVX2 then, AVX512 now." in caplog.text


@pytest.fixture
def torch_threads_kept():
    """A test that trains in this process with another ``torch_threads`` leaves the worker's count as it was."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_a_run_continued_or_reproduced_with_other_threads_says_its_hardware_moved(
    compose_cfg, store: Path, caplog, torch_threads_kept
) -> None:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from explab.config import config_dir
    from explab.train import train

    common = ("trainer.enable_progress_bar=false", "test=false", "log_plots=false")
    train(compose_cfg("trainer.max_epochs=1", "torch_threads=1", *common))
    [run] = runs_in(store, "digits_cnn")
    assert run.data.tags["hardware.torch_threads"] == "1"
    assert "explab.resumed_hardware" not in run.data.tags

    # torch splits a reduction across its threads: two threads round differently from one
    reproduce = compose_cfg(f"reproduce={run.info.run_id}", "torch_threads=2")
    GlobalHydra.instance().clear()
    with (
        initialize_config_dir(str(config_dir()), version_base="1.3"),
        caplog.at_level(logging.WARNING, logger="explab.reproduce"),
    ):
        train(config_from_recorded_run(reproduce))
    assert (
        "hardware differs from the source run: hardware.torch_threads 1 then, 2 now. Floats round differently here"
        in caplog.text
    )

    resume = compose_cfg(f"resume={run.info.run_id}", "trainer.max_epochs=2", "torch_threads=2", *common)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        train(config_from_recorded_run(resume))
    tags = open_client(tracking_uri_for(store)).get_run(run.info.run_id).data.tags
    assert tags["hardware.torch_threads"] == "1", "the run keeps the hardware it started on"
    assert tags["explab.resumed_hardware"] == "hardware.torch_threads 1 then, 2 now"


def test_a_run_whose_project_moved_is_resumed_in_its_folder_where_it_is_now(
    compose_cfg, store: Path, tmp_path: Path, caplog
) -> None:
    """Its params name the folder it trained in; after the project moved, resume= said it had no last
    checkpoint there and offered only reproduce=."""
    import shutil

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from explab.config import config_dir
    from explab.train import train

    # the job's folder is tmp_path/out: its paths.log_dir is tmp_path, as a project's is its logs/
    common = ("trainer.enable_progress_bar=false", "test=false", "log_plots=false", f"paths.log_dir={tmp_path}")
    train(compose_cfg("trainer.max_epochs=1", "callbacks.last_checkpoint.min_interval_seconds=0", *common))
    [run] = runs_in(store, "digits_cnn")
    recorded = Path(run.data.params["paths.output_dir"])
    now = tmp_path / "moved" / recorded.relative_to(tmp_path)
    now.parent.mkdir()
    shutil.move(recorded, now)
    resume = compose_cfg(f"resume={run.info.run_id}", "trainer.max_epochs=2", f"paths.log_dir={tmp_path}/moved")
    GlobalHydra.instance().clear()
    with (
        initialize_config_dir(str(config_dir()), version_base="1.3"),
        caplog.at_level(logging.WARNING, logger="explab.reproduce"),
    ):
        cfg = config_from_recorded_run(resume)
        assert (cfg.paths.output_dir, cfg.ckpt_path) == (str(now), str(now / "checkpoints" / "last.ckpt"))
        train(cfg)
    assert f"recorded its folder as {recorded}, which holds no last.ckpt; it is at {now} now" in caplog.text
    [resumed] = runs_in(store, "digits_cnn")
    assert resumed.info.status == "FINISHED" and resumed.data.metrics["epoch"] == 1, "its second epoch, 0-based"
    assert not recorded.exists(), "nothing is written where the folder was"


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
    assert "exists and is not empty" not in resumed.stderr, "Lightning's warning for a folder continued on purpose"
    assert [r.info.run_id for r in runs_in(tmp_path / "mlruns", "digits_cnn")] == [run_id]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert "explab.resumed_with" not in client.get_run(run_id).data.tags, "a resume that changes nothing says nothing"
    for key in ("val/acc", "train/loss", "val/acc_best"):
        steps = [step for step, _ in history(tmp_path, run_id, key)]
        assert len(steps) == epochs and len(set(steps)) == epochs and steps == sorted(steps), (key, steps)
    best = [value for _, value in history(tmp_path, run_id, "val/acc_best")]
    assert best == sorted(best), "the best-so-far value survives the resume"
    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert sorted(i.dataset.name for i in inputs) == ["digits-test", "digits-train", "digits-val"], "once each"


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill",
    [
        # last.ckpt of epoch 2 written, the epoch's training values not yet in the store
        "KillAfterEpochCheckpoint",
        # epoch 1's values in the store, its checkpoint not yet last.ckpt
        "KillAtEpochStart",
    ],
)
def test_a_kill_between_checkpoint_and_store_loses_no_epoch_and_logs_none_twice(tmp_path: Path, kill: str) -> None:
    epochs = 4
    killed = run_cli(
        "explab-train",
        f"trainer.max_epochs={epochs}",
        "callbacks.last_checkpoint.min_interval_seconds=0",
        f"+callbacks.kill._target_=tests.support.callbacks.{kill}",
        "+callbacks.kill.epoch=2",
        *common(tmp_path),
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")

    resumed = run_cli(
        "explab-train",
        f"resume={run.info.run_id}",
        "+callbacks.kill.epoch=-1",  # the resumed run keeps its callbacks: this one now never fires
        *common(tmp_path),
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for key in ("train/loss", "train/acc", "val/acc", "val/loss", "val/acc_best"):
        steps = [step for step, _ in history(tmp_path, run.info.run_id, key)]
        assert len(steps) == epochs and len(set(steps)) == epochs, (key, steps)


@pytest.mark.slow
def test_a_run_killed_after_its_last_epoch_resumes_with_the_metrics_it_trained(tmp_path: Path, compose_cfg) -> None:
    """Resumed from a checkpoint of its final epoch, the fit trains nothing and Lightning holds no epoch
    metrics; the job still returns them (a sweep's objective among them), from the run's own record."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from explab.config import config_dir
    from explab.train import train

    killed = run_cli(
        "explab-train",
        "trainer.max_epochs=2",
        "+callbacks.kill._target_=tests.support.callbacks.KillAtTestStart",
        *common(tmp_path),
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    cfg = compose_cfg(f"resume={run.info.run_id}", "+callbacks.kill.armed=false")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):  # the recorded overrides are composed again
        metrics = train(config_from_recorded_run(cfg))
    [(_, best)] = history(tmp_path, run.info.run_id, "val/acc_best")[-1:]
    assert metrics["val/acc_best"] == pytest.approx(best)
    assert "test/acc" in metrics
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.parametrize("nohup", [False, True])
def test_a_terminal_that_hangs_up_ends_the_run_killed_with_its_last_checkpoint_unless_started_with_nohup(
    tmp_path: Path, nohup: bool
) -> None:
    """A dropped ssh session: SIGHUP killed the process at once, leaving the run RUNNING and the epochs since
    the last interval's checkpoint lost. Started with nohup, the command must train on."""
    command = [
        str(BIN / "explab-train"),
        "trainer.max_epochs=50",
        "callbacks.early_stopping.patience=50",  # still training at the hang-up
        "data.batch_size=4",
        *common(tmp_path),
    ]
    terminal = Terminal(["/usr/bin/nohup", *command] if nohup else command, tmp_path, root_env())
    try:
        run_id = wait_for_points(tmp_path, "val/acc", 1)
        terminal.hang_up()
        if nohup:
            assert terminal.wait(timeout=5) is None, "nohup keeps it training"
            os.kill(terminal.pid, signal.SIGTERM)
        stopped_by = signal.SIGTERM if nohup else signal.SIGHUP
        assert terminal.wait(timeout=60) == 128 + stopped_by, terminal.output[-2000:]
    finally:
        if terminal.wait(timeout=0) is None:
            os.kill(terminal.pid, signal.SIGKILL)
    run = MlflowClient(tracking_uri_for(tmp_path / "mlruns")).get_run(run_id)
    assert (run.info.status, run.data.tags["explab.status_reason"]) == ("KILLED", f"Terminated by {stopped_by.name}")
    checkpoint = load_checkpoint(Path(run.data.params["paths.output_dir"]) / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] > 1257 // 4 + 1, "written at the hang-up, past the first epoch"


@pytest.mark.slow
def test_a_stop_that_a_library_swallows_while_the_best_checkpoint_loads_still_ends_the_run_killed(
    tmp_path: Path,
) -> None:
    """fsspec's ``exists`` swallows whatever a signal's handler raises inside it: a terminal hung up (or a
    scheduler's SIGTERM) while the test stage looked for the best checkpoint made Lightning answer "Checkpoint
    file not found" for a file that was there, and the run ended FAILED, exit code 1. SIGTERM here: a suite
    started under nohup passes SIGHUP on ignored."""
    stopped = run_cli(
        "explab-train",
        "trainer.max_epochs=1",
        "log_model=false",
        "+callbacks.stop._target_=tests.support.callbacks.SignalInsideBestCheckpointLookup",
        "+callbacks.stop.signum=SIGTERM",
        *common(tmp_path),
        cwd=tmp_path,
        env=root_env(),
    )
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert (run.info.status, run.data.tags["explab.status_reason"]) == ("KILLED", "Terminated by SIGTERM")
    assert "test/acc" not in run.data.metrics


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signal_writes_last_checkpoint_at_once_and_the_run_resumes_mid_epoch(
    tmp_path: Path, signum: signal.Signals
) -> None:
    # last.ckpt is otherwise due only 10 s after the fit starts: what exists at the signal was written for it
    proc = start(tmp_path, "trainer.max_epochs=50", "data.batch_size=4")
    run_id = wait_for_points(tmp_path, "val/acc", 1)
    time.sleep(0.5)  # inside the second epoch
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr[-2000:]
    client = MlflowClient(tracking_uri_for(tmp_path / "mlruns"))
    run = client.get_run(run_id)
    assert run.info.status == "KILLED", stderr[-2000:]
    assert run.data.tags["explab.status_reason"] == f"Terminated by {signum.name}"
    checkpoint = load_checkpoint(Path(run.data.params["paths.output_dir"]) / "checkpoints" / "last.ckpt")
    epoch, done = checkpoint["epoch"], checkpoint["global_step"]
    steps_per_epoch = 1257 // 4 + 1  # digits' training split in batches of 4
    assert epoch * steps_per_epoch < done < (epoch + 1) * steps_per_epoch, "written mid-epoch, with its steps"

    resumed = run_cli(
        "explab-train", f"resume={run_id}", f"trainer.max_epochs={epoch + 1}", *common(tmp_path), cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [step for step, _ in history(tmp_path, run_id, "val/acc")]
    gaps = {b - a for a, b in itertools.pairwise(steps)}
    assert len(steps) == epoch + 1 and gaps == {steps_per_epoch}, "the epoch is finished, not started again"


@pytest.mark.slow
@pytest.mark.parametrize("epoch", [1, 3])  # an epoch in the middle of the fit, and its last one
def test_a_signal_in_an_epochs_last_batch_stops_once_the_epoch_is_validated_and_nothing_of_it_is_lost(
    tmp_path: Path, epoch: int
) -> None:
    """Written after the epoch's last batch and before its validation, last.ckpt resumed straight into the
    next epoch: a preempted SLURM job's run had no val/acc, train/loss or epoch checkpoint for that epoch."""
    arm = ["+callbacks.signal._target_=tests.support.callbacks.SignalAtBatch", "+callbacks.signal.signum=SIGUSR2"]
    fit = ["trainer.max_epochs=4", "callbacks.early_stopping.patience=100", "log_model=false", *common(tmp_path)]
    stopped = run_cli("explab-train", *arm, f"+callbacks.signal.epoch={epoch}", *fit, cwd=tmp_path, env=root_env())
    assert stopped.returncode == 128 + signal.SIGUSR2, stopped.stderr[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.data.tags["explab.status_reason"] == "Terminated by SIGUSR2"
    resumed = run_cli(
        "explab-train", f"resume={run.info.run_id}", "+callbacks.signal.armed=false", *fit, cwd=tmp_path,
        env=root_env(),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for key in ("val/acc", "train/loss", "lr-Adam"):
        steps = [step for step, _ in history(tmp_path, run.info.run_id, key)]
        assert len(steps) == 4 and len(set(steps)) == 4, (key, steps)
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics


def batches_of_an_uninterrupted_fit(cfg, epochs: int) -> list[str]:
    """The lines ``RecordTrainingBatches`` writes for a fit of ``epochs`` epochs on ``cfg``'s data, read from
    the data module's own training batches."""
    data = instantiate(cfg.data)
    data.setup("fit")
    batches = data.train_dataloader()
    return [
        f"{epoch} {index} {y.tolist()} {float(x.sum()):.4f}"
        for epoch in range(epochs)
        for index, (x, y) in enumerate(batches)
    ]


@pytest.mark.slow
def test_a_signal_in_a_batch_that_a_validation_follows_stops_once_it_is_validated_and_judged(
    tmp_path: Path, compose_cfg
) -> None:
    """Written at the end of a batch that a mid-epoch validation (val_check_interval) follows, last.ckpt
    resumed past that validation: Lightning does not run it again, and the run lost a val/acc point. The
    resumed fit trains the rest of that epoch's batches, and the next epoch's, as an uninterrupted fit would:
    it had started the epoch's shuffle over (some samples twice, others never) and shuffled every later
    epoch as the fit's first ones."""
    arm = ["+callbacks.signal._target_=tests.support.callbacks.SignalAtBatch", "+callbacks.signal.signum=SIGTERM"]
    arm += ["+callbacks.batches._target_=tests.support.callbacks.RecordTrainingBatches"]
    arm += [f"+callbacks.batches.path={tmp_path / 'batches.txt'}"]
    # digits: 20 training batches of 64, validated after every 5th; the signal lands in the 10th of epoch 1
    fit = ["trainer.max_epochs=3", "+trainer.val_check_interval=5", "callbacks.early_stopping.patience=100"]
    fit += ["log_model=false", *common(tmp_path)]
    stopped = run_cli(
        "explab-train", *arm, "+callbacks.signal.epoch=1", "+callbacks.signal.batch=9", *fit, cwd=tmp_path,
        env=root_env(),
    )  # fmt: skip
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.data.tags["explab.status_reason"] == "Terminated by SIGTERM"
    validated = history(tmp_path, run.info.run_id, "val/acc")
    assert len(validated) == 4 + 2, validated
    # written after the best checkpoint and early stopping have judged that validation
    checkpoint = load_checkpoint(Path(run.data.params["paths.output_dir"]) / "checkpoints" / "last.ckpt")
    [best] = [state for key, state in checkpoint["callbacks"].items() if key.startswith("ModelCheckpoint{'monitor'")]
    assert best["current_score"] == pytest.approx(validated[-1][1])

    resumed = run_cli(
        "explab-train", f"resume={run.info.run_id}", "+callbacks.signal.armed=false", *fit, cwd=tmp_path,
        env=root_env(),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [step for step, _ in history(tmp_path, run.info.run_id, "val/acc")]
    assert len(steps) == 3 * 4 and len(set(steps)) == 3 * 4, steps
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
    trained = (tmp_path / "batches.txt").read_text().splitlines()
    assert trained == batches_of_an_uninterrupted_fit(compose_cfg(), epochs=3)
    assert "resuming from a checkpoint that ended before the epoch ended" not in resumed.stderr


def learning_curves(mlruns: Path) -> dict[str, list[tuple[int, float]]]:
    """Every metric history of the one digits run in ``mlruns`` but its timings and system metrics."""
    [run] = runs_in(mlruns, "digits_cnn")
    client = open_client(tracking_uri_for(mlruns))
    keys = [key for key in run.data.metrics if not key.startswith(("perf/", "system/"))]
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)) for key in keys}


@pytest.mark.slow
# digits in batches of 64: 20 an epoch (5 steps of 4), or 10 on each of ddp_cpu's 2 ranks (3 steps: 4, 4, 2);
# the signal lands in the second batch of the third or second window of epoch 1
@pytest.mark.parametrize(("trainer", "batch", "steps"), [("cpu", 9, 5 + 3), ("ddp_cpu", 5, 3 + 2)])
def test_a_run_stopped_mid_epoch_and_resumed_logs_the_metrics_of_one_never_stopped(
    tmp_path: Path, trainer: str, batch: int, steps: int
) -> None:
    """Bit for bit, every metric at every step: a deterministic digits fit (with dropout) that accumulates
    gradients over 4 batches, stopped by SIGTERM in the second batch of a window in epoch 1, then resumed.
    The resumed fit trains the rest of the epoch's shuffled order, draws the dropout masks the fit would
    have drawn, and counts the epoch's batches before the stop in its train/ values; the stop waited for the
    window's optimizer step, as a checkpoint holds no gradients. Before, each of these moved the curves from
    that epoch on."""
    fit = [
        f"trainer={trainer}",
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        "+trainer.accumulate_grad_batches=4",
    ]
    fit += ["log_model=false", "log_plots=false", "trainer.enable_progress_bar=false"]
    never = [f"paths.mlruns_dir={tmp_path}/never/mlruns", f"paths.log_dir={tmp_path}/never/logs"]
    uninterrupted = run_cli("explab-train", *fit, *never, cwd=tmp_path)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    arm = ["+callbacks.signal._target_=tests.support.callbacks.SignalAtBatch", "+callbacks.signal.signum=SIGTERM"]
    arm += ["+callbacks.signal.epoch=1", f"+callbacks.signal.batch={batch}"]
    stopped = [f"paths.mlruns_dir={tmp_path}/stopped/mlruns", f"paths.log_dir={tmp_path}/stopped/logs"]
    first = run_cli("explab-train", *arm, *fit, *stopped, cwd=tmp_path, env=root_env())
    assert first.returncode == 128 + signal.SIGTERM, first.stderr[-3000:]
    [run] = runs_in(tmp_path / "stopped" / "mlruns", "digits_cnn")
    checkpoint = load_checkpoint(Path(run.data.params["paths.output_dir"]) / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == steps, "stopped after the window's optimizer step"
    resumed = run_cli(
        "explab-train", f"resume={run.info.run_id}", *arm, "+callbacks.signal.armed=false", *fit, *stopped,
        cwd=tmp_path, env=root_env(),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert learning_curves(tmp_path / "stopped" / "mlruns") == learning_curves(tmp_path / "never" / "mlruns")


def labels_trained_in_epoch(record: Path, epoch: int) -> Counter[int]:
    """The targets of the batches ``RecordTrainingBatches`` wrote to ``record`` for ``epoch``, by every rank."""
    labels: Counter[int] = Counter()
    for line in record.read_text().splitlines():
        trained_in, _, targets_and_sum = line.split(" ", 2)
        if int(trained_in) == epoch:
            labels.update(ast.literal_eval(targets_and_sum.rsplit(" ", 1)[0]))
    return labels


@pytest.mark.slow
@pytest.mark.parametrize("resumed_with", ["trainer=ddp_cpu", "data.batch_size=32"])
def test_a_run_stopped_mid_epoch_and_resumed_on_other_ranks_or_batches_trains_and_validates_the_rest_of_it(
    tmp_path: Path, compose_cfg, resumed_with: str
) -> None:
    """Lightning counts an epoch's batches per rank, in the batch size it trained with. Stopped in batch 13 of
    20 on one process and resumed on 2 ranks (10 batches each), the fit counted on past the epoch's end: it
    never validated the epoch, and early stopping failed the run. Now the epoch goes on from the samples all
    ranks trained, counted in the new ranks and batches."""
    record = tmp_path / "batches.txt"
    fit = ["trainer.max_epochs=2", "log_model=false", "log_plots=false", "test=false", *common(tmp_path)]
    fit += [
        "+callbacks.batches._target_=tests.support.callbacks.RecordTrainingBatches",
        f"+callbacks.batches.path={record}",
    ]
    arm = ["+callbacks.signal._target_=tests.support.callbacks.SignalAtBatch", "+callbacks.signal.signum=SIGTERM"]
    arm += ["+callbacks.signal.epoch=1", "+callbacks.signal.batch=12"]
    stopped = run_cli("explab-train", *arm, *fit, cwd=tmp_path, env=root_env())
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")

    resumed = run_cli(
        "explab-train", f"resume={run.info.run_id}", *arm, "+callbacks.signal.armed=false", resumed_with, *fit,
        cwd=tmp_path, env=root_env(),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.info.status == "FINISHED"
    assert len(history(tmp_path, run.info.run_id, "val/acc")) == 2, "each epoch validated once"
    data = instantiate(compose_cfg().data)
    data.setup("fit")
    split = Counter(data.splits["train"].y.tolist())
    trained = labels_trained_in_epoch(record, epoch=1)
    # the training split is odd: on 2 ranks one sample is trained twice so that both take the same steps
    assert trained >= split and trained.total() - split.total() < 2, trained - split


@pytest.mark.slow
def test_a_resume_whose_batch_limit_ends_the_epoch_before_where_it_stopped_is_refused_and_the_run_kept(
    tmp_path: Path,
) -> None:
    """Stopped after 13 of 20 batches and resumed with half an epoch's batches (10), Lightning started its count
    over without validating the epoch, and early stopping failed the run. The resume is refused before training,
    the run left KILLED, and a limit past where it stopped trains the epoch to that limit and validates it."""
    fit = ["trainer.max_epochs=2", "log_model=false", "log_plots=false", "test=false", *common(tmp_path)]
    arm = ["+callbacks.signal._target_=tests.support.callbacks.SignalAtBatch", "+callbacks.signal.signum=SIGTERM"]
    arm += ["+callbacks.signal.epoch=1", "+callbacks.signal.batch=12", *fit]
    stopped = run_cli("explab-train", *arm, cwd=tmp_path, env=root_env())
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    resume = [f"resume={run.info.run_id}", *arm, "+callbacks.signal.armed=false"]

    refused = run_cli("explab-train", *resume, "+trainer.limit_train_batches=0.5", cwd=tmp_path, env=root_env())
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert "stopped inside an epoch after 13 training batches per rank" in refused.stderr, refused.stderr[-3000:]
    assert "trainer.limit_train_batches=0.5 ends an epoch after 10" in refused.stderr
    assert "Give trainer.limit_train_batches=14 or more" in refused.stderr
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.info.status == "KILLED", run.data.tags.get("explab.status_reason")
    assert "limit_train_batches" in run.data.tags["explab.resume_failed"]

    resumed = run_cli("explab-train", *resume, "+trainer.limit_train_batches=14", cwd=tmp_path, env=root_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.info.status == "FINISHED"
    # validated after the 20 steps of epoch 0, then after the 14 of epoch 1 under the new limit
    assert [step for step, _ in history(tmp_path, run.info.run_id, "val/acc")] == [19, 33]


@pytest.mark.slow
def test_ctrl_c_during_training_ends_the_run_killed_and_says_so(tmp_path: Path) -> None:
    proc = start(tmp_path, "trainer.max_epochs=50", "data.batch_size=4")
    run_id = wait_for_points(tmp_path, "val/acc", 1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    run = MlflowClient(tracking_uri_for(tmp_path / "mlruns")).get_run(run_id)
    assert run.info.status == "KILLED", stderr[-2000:]
    assert run.data.tags["explab.status_reason"] == "Interrupted (Ctrl-C)", "not Lightning's SystemExit: 1"
    assert f"MLflow run {run_id} ended KILLED: Interrupted (Ctrl-C)" in stdout


def test_a_run_explab_train_did_not_record_is_refused_before_anything_runs(compose_cfg, store: Path) -> None:
    client = MlflowClient(tracking_uri_for(store))
    foreign = client.create_run(client.create_experiment("notebook")).info.run_id  # a run logged by hand
    with pytest.raises(UsageError, match=rf"run {foreign} has no config/overrides.yaml: it was not recorded by"):
        config_from_recorded_run(compose_cfg(f"reproduce={foreign}"))


def test_a_run_whose_option_is_found_nowhere_here_is_refused_with_where_to_look(compose_cfg, store: Path) -> None:
    """A lab's run recorded before its search path was: Hydra said only "Could not find 'experiment/...'"."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from explab.config import config_dir

    source = TrackedRun.create(tracking_uri_for(store), "wine_resmlp", str(store / "artifacts"))
    source.log_text("- experiment=wine_resmlp\n", "config/overrides.yaml")
    source.end(None)
    cfg = compose_cfg(f"reproduce={source.run_id}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"), pytest.raises(UsageError) as refused:
        config_from_recorded_run(cfg)
    assert str(refused.value) == (
        f"run {source.run_id} was composed from an option this command cannot find: In 'train': Could not find "
        "'experiment/wine_resmlp'. If it came from a lab's own configs, give their folder as "
        "hydra.searchpath=[file://PATH]; if it was removed since, give the option to use instead on the command line"
    )


def test_a_url_recorded_without_its_password_gives_way_to_the_store_of_this_command(compose_cfg, store: Path) -> None:
    """A run records a URL given on its command line with the password masked; composed again as recorded,
    ``http://lab:***@...`` would send a reproduction's record to the server with a wrong password."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from explab.config import config_dir

    source = TrackedRun.create(tracking_uri_for(store), "digits_cnn", str(store / "artifacts"))
    source.log_text(
        "- logger.mlflow.tracking_uri=http://lab:***@10.0.0.5:5000\n- optimizer.lr=0.01\n", "config/overrides.yaml"
    )
    source.end(None)
    cfg = compose_cfg(f"reproduce={source.run_id}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        rebuilt = config_from_recorded_run(cfg)
    assert rebuilt.optimizer.lr == 0.01, "the rest of the record is composed"
    assert rebuilt.logger.mlflow.tracking_uri == tracking_uri_for(store)


def test_a_setting_this_command_changes_is_noted_and_one_nobody_changed_is_warned_of(
    compose_cfg, store: Path, caplog
) -> None:
    """``reproduce=ID log_model=true`` warned "config log_model differs from the source run" as loudly as a
    default of conf/ that moved since the run, which nobody asked for and which moves its results."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from explab.config import config_dir

    source = TrackedRun.create(tracking_uri_for(store), "digits_cnn", str(store / "artifacts"))
    source.log_text("- seed=3\n", "config/overrides.yaml")
    default_then = {"optimizer.lr": "0.01", "trainer.max_epochs": "20"}  # the defaults when the run was trained
    recorded = compose_cfg("seed=3")
    settle_modes(recorded)  # a run records the modes it settled: max for val/acc
    source.log_params({**flatten_params(recordable(recorded)), **default_then, "seed": "3"})
    source.end(None)
    # monitor= moves what follows it too (the callbacks' monitor and mode): the command's doing, not a drift
    cfg = compose_cfg(f"reproduce={source.run_id}", "trainer.max_epochs=2", "monitor=val/loss")
    GlobalHydra.instance().clear()
    with (
        caplog.at_level(logging.INFO, logger="explab.reproduce"),
        initialize_config_dir(str(config_dir()), version_base="1.3"),
    ):
        config_from_recorded_run(cfg)
    said = {record.getMessage(): record.levelname for record in caplog.records}
    assert said["config trainer.max_epochs: 20 then, 2 now, as this command gives it"] == "INFO", said
    assert said["config optimizer.lr differs from the source run: 0.01 then, 0.003 now"] == "WARNING", said
    for key, then, now in [("monitor", "val/acc", "val/loss"), ("callbacks.model_checkpoint.mode", "max", "min")]:
        assert said[f"config {key}: {then} then, {now} now, as this command gives it"] == "INFO", said
    assert [m for m, level in said.items() if level == "WARNING"] == [
        "config optimizer.lr differs from the source run: 0.01 then, 0.003 now"
    ], said


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo owned > /tmp/explab-owned",))


def test_tampered_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "evil": _Payload()}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError, match=r"cannot be loaded safely .*: .*[Uu]nsupported") as refused:
        load_checkpoint(path)
    assert "weights_only" not in str(refused.value), "torch's advice to load it unsafely is not passed on"
    assert not Path("/tmp/explab-owned").exists()
    done = run_cli("explab-eval", f"ckpt_path={path}", *common(tmp_path)[:2], cwd=tmp_path)
    assert done.returncode != 0 and "cannot be loaded safely" in done.stderr


def test_a_file_that_is_no_checkpoint_is_refused_with_torchs_reason(tmp_path: Path) -> None:
    path = tmp_path / "notes.ckpt"
    path.write_text("garbage")
    with pytest.raises(CheckpointError, match=r"cannot be loaded safely .*: Unsupported operand") as refused:
        load_checkpoint(path)
    assert "weights_only" not in str(refused.value)


@pytest.mark.parametrize("kept", [500, -100])  # cut in its first entries, or within its tensors near the end
def test_truncated_checkpoint_is_refused(tmp_path: Path, kept: int) -> None:
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:kept])
    size = path.stat().st_size
    with pytest.raises(CheckpointError, match=rf"last.ckpt is truncated \({size} bytes\): it was cut off"):
        load_checkpoint(path)
