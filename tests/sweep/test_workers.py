"""One sweep command, K workers (``hydra.sweeper.n_jobs``): real `-m` subprocesses on real journal storages."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from explab.errors import UsageError
from explab.sweep.workers import gpu_per_worker
from explab.tracking.orphans import process_alive
from tests.conftest import BIN, as_from_a_terminal
from tests.sweep.test_continuation import worker_pid
from tests.sweep.test_sweeper import load, load_once_written, plain_app_command, sweep_plain_app


def worker_pids(study: optuna.Study) -> set[int]:
    return {pid for t in study.trials if (pid := worker_pid(t))}


def test_gpus_are_dealt_round_robin_and_packed() -> None:
    assert gpu_per_worker(3, None, []) == [None, None, None]
    assert gpu_per_worker(3, None, ["0", "1"]) == ["0", "1", "0"]
    assert gpu_per_worker(1, 2, ["0", "1"]) == ["0", "1", "0", "1"], "n_jobs=1 asks for every slot"
    assert gpu_per_worker(3, 4, ["5"]) == ["5", "5", "5"]
    with pytest.raises(UsageError, match="do not fit 1 GPU"):
        gpu_per_worker(5, 4, ["0"])
    with pytest.raises(UsageError, match="shows none"):
        gpu_per_worker(2, 2, [])


@pytest.mark.slow
def test_one_command_runs_k_workers_that_fill_one_study(tmp_path: Path) -> None:
    done = sweep_plain_app(tmp_path, "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=2", "sleep=0.3", study="pool")
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(tmp_path, "pool")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 8
    pids = worker_pids(study)
    assert len(pids) == 2, "both workers ran trials"
    assert not any(process_alive(pid) for pid in pids), "no worker outlives the command"
    log = done.stdout + done.stderr
    assert log.count("All workers done") == 1 and "8 complete" in log, "one summary for all workers"
    # the outcome, as one process's sweep gives it: the best trial logged once, and optimization_results.yaml
    assert log.count(f"Best trial {study.best_trial.number}: ") == 1, log[-3000:]
    results = yaml.safe_load((tmp_path / "multirun" / "optimization_results.yaml").read_text())
    assert results["best_trial"] == study.best_trial.number and results["best_value"] == study.best_value


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_to_a_sweep_says_what_the_study_keeps_and_how_to_go_on(tmp_path: Path, workers: int) -> None:
    """One worker is stopped inside Lightning's fit (which exits 1), a pool by its own handler (which raised
    KeyboardInterrupt, printed as a traceback): both end as a shell expects of Ctrl-C, and say how to go on."""
    command = [
        str(BIN / "explab-train"), "-m", "hparams_search=digits_optuna", f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs", "hydra.sweeper.n_trials=4", f"hydra.sweeper.n_jobs={workers}",
        "trainer.max_epochs=50", "data.batch_size=4", "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    sweep = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal
    )
    journal = tmp_path / "mlruns" / "optuna" / "digits_cnn.journal"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sweep.poll() is None:
        study = load_once_written(journal.parent, "digits_cnn_optuna", journal.name)
        if study is not None and len(study.trials) >= workers:
            break
        time.sleep(0.3)
    time.sleep(3)  # inside the trials' fits
    sweep.send_signal(signal.SIGINT)
    stdout, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert "Interrupted (Ctrl-C): the sweep stopped with 0 of 4 trials finished" in stdout + stderr, stdout[-3000:]
    assert "the same command goes on with it" in stdout + stderr


@pytest.mark.slow
def test_ctrl_c_to_the_command_stops_every_worker_and_leaves_nothing_running(tmp_path: Path) -> None:
    command = plain_app_command(
        tmp_path, "stopped", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2", "sleep=5",
        f"hydra.sweep.dir={tmp_path}/multirun",
    )  # fmt: skip
    pool = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal
    )
    deadline, running = time.monotonic() + 120, 0
    while time.monotonic() < deadline and running < 2 and pool.poll() is None:
        if (study := load_once_written(tmp_path, "stopped")) is not None:
            running = len(study.get_trials(states=(TrialState.RUNNING,)))
        time.sleep(0.3)
    assert running == 2, f"both workers were seen in a trial (sweep exit code {pool.poll()})"
    pool.send_signal(signal.SIGINT)
    _, stderr = pool.communicate(timeout=120)
    assert pool.returncode != 0
    study = load(tmp_path, "stopped")
    assert not study.get_trials(states=(TrialState.RUNNING,)), stderr[-2000:]
    assert len(study.get_trials(states=(TrialState.FAIL,))) == 2, "the two trials in flight"
    assert not any(process_alive(pid) for pid in worker_pids(study))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("hydra.sweeper.n_jobs=0", "n_jobs must be an integer >= 1"),
        ("hydra.sweeper.n_trials=0", "Error: hydra.sweeper.n_trials must be an integer >= 1 (the finished trials"),
        ("hydra.sweeper.trials_per_gpu=2", "packs workers onto GPUs, but this machine shows none"),
        ("hydra.sweeper.trials_per_gpu=0", "Error: hydra.sweeper.trials_per_gpu must be >= 1, got 0"),
        ("hydra.sweeper.detach=true", "detach=true submits its workers as SLURM jobs: add hydra/launcher=slurm"),
        ("hydra.sweeper.sampler.seed=abc", "Error: hydra.sweeper.sampler.seed must be an integer or null"),
        (
            "hydra.sweeper.max_failure_rate=1.5",
            "Error: hydra.sweeper.max_failure_rate must be between 0 and 1, got 1.5",
        ),
        ("hydra.sweeper.heartbeat_seconds=0", "Error: hydra.sweeper.heartbeat_seconds must be > 0"),
        ("hydra.sweeper.reference_point=[1.0,2.0]", "reference_point has 2 values for 1 objective\n"),
        ("hydra.sweeper.replicates=2 hydra.sweeper.replicate_top=0", "replicate_top must be an integer >= 1, got 0"),
        (
            "hydra/sweeper/sampler=grid +hydra.sweeper.params.y={type:int,low:0,high:2,step:1,when:{x:1.0}}",
            "a grid has one fixed set of parameters; y is sampled only under a condition (when:)",
        ),
        (
            "hydra/sweeper/pruner=hyperband hydra.sweeper.pruner.min_resource=0",
            "Error: hydra.sweeper.pruner (optuna.pruners.HyperbandPruner: min_resource=0, max_resource=auto, "
            "reduction_factor=3) cannot prune: division by zero",
        ),
    ],
)
def test_bad_sweep_settings_are_refused_before_any_trial(tmp_path: Path, setting: str, message: str) -> None:
    command = plain_app_command(tmp_path, "refused", *setting.split(), f"hydra.sweep.dir={tmp_path}/multirun")
    no_gpus = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=no_gpus)
    assert done.returncode == 1 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "optuna.journal").exists()
