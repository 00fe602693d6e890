"""Jobs and sweeps on a real one-node SLURM cluster (munged, slurmctld, slurmd), through hydra-submitit-launcher.

The cluster is started here and stopped afterwards; where SLURM is not installed (``.ci/run`` installs it
as root) the tests skip and say why.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import optuna
import pytest

from explab.requeue import request_requeue
from explab.sweep.storage import open_storage
from explab.tracking.store import open_client
from tests.conftest import BIN, ROOT, as_from_a_terminal, root_env, run_cli, runs_in
from tests.examples.test_wine_lab import LAB
from tests.support.slurm import SlurmCluster, why_not_available
from tests.sweep.test_sweeper import APP, load

pytestmark = pytest.mark.slow

# a CPU node: one core and 1 GB per task, no GPUs (conf/hydra/launcher/slurm.yaml asks for a GPU node)
CPU_JOB = [
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.timeout_min=20",
]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    reason = why_not_available()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    os.environ.update(cluster.env)  # sbatch, squeue and submitit in every subprocess find this cluster
    yield cluster
    for key in cluster.env:
        os.environ.pop(key, None)
    cluster.stop()


def explab(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "explab-train", "-m", "hydra/launcher=slurm", *CPU_JOB, f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs", "trainer.enable_progress_bar=false", *args, cwd=tmp_path, timeout=timeout,
    )  # fmt: skip


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def test_multirun_of_two_seeds_is_two_slurm_jobs_and_two_finished_runs(slurm: SlurmCluster, tmp_path: Path) -> None:
    done = explab(tmp_path, "seed=1,2", "trainer.max_epochs=1", "torch_threads=1")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert sorted(r.data.tags["seed"] for r in runs) == ["1", "2"]
    assert sorted(r.info.run_name for r in runs) == ["seed=1", "seed=2"], "named on the nodes as on this machine"
    assert {r.info.status for r in runs} == {"FINISHED"}
    jobs = [j for j in slurm.settled_jobs() if j["name"] == "train" and j["state"] == "COMPLETED"]
    assert len(jobs) == 2, slurm.jobs()
    # the jobs' folders are in the one the launcher submitted from: its process token reached the nodes
    [folder] = {Path(r.data.params["paths.output_dir"]).parent for r in runs}
    assert (folder / ".submitit").is_dir() and re.search(r"multiruns/[\d_-]+_[0-9a-f]{6}$", str(folder)), folder


def test_a_job_of_two_slurm_tasks_trains_one_ddp_run(slurm: SlurmCluster, tmp_path: Path) -> None:
    done = explab(
        tmp_path, "trainer=ddp_cpu", "hydra.launcher.tasks_per_node=2", "trainer.max_epochs=1", "torch_threads=1"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.info.status == "FINISHED" and run.data.tags["trainer.world_size"] == "2"
    assert "test/acc" in run.data.metrics


def test_a_job_of_two_slurm_tasks_for_a_single_process_trainer_is_refused(slurm: SlurmCluster, tmp_path: Path) -> None:
    """Each task trained the same model, recorded by the first alone: a DDP job without trainer=multinode."""
    done = explab(tmp_path, "trainer=cpu", "hydra.launcher.tasks_per_node=2", "trainer.max_epochs=1", timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "this SLURM job step has 2 tasks, and trainer.devices=1 trains in one process" in done.stderr
    assert "trainer=multinode trainer.devices=2 trainer.num_nodes=1" in done.stderr, done.stderr[-3000:]
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == [], "no run exists"


def test_k_workers_keep_k_jobs_in_flight_and_a_free_slot_takes_the_next_trial_at_once(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    record = tmp_path / "trials.csv"
    command = [
        sys.executable, str(APP), "-m", "hydra/sweeper=explab_optuna", "hydra/launcher=submitit_slurm",
        *CPU_JOB[:2], f"hydra.sweeper.storage=journal:///{tmp_path}/optuna.journal",
        "hydra.sweeper.study_name=slots", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
        f"hydra.sweep.dir={tmp_path}/multirun", "x=interval(-4.0, 4.0)",
        "sleep=1", "slow_trials=[0]", "slow_sleep=30", f"record={record}",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=root_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [t.state.name for t in load(tmp_path, "slots").trials] == ["COMPLETE"] * 4
    job_of = dict(line.split(",") for line in record.read_text().splitlines())
    times = {j["id"]: (seconds(j["start"]), seconds(j["end"])) for j in slurm.settled_jobs()}
    span = {int(trial): times[job] for trial, job in job_of.items()}
    for moment in sorted(start for start, _ in span.values()):
        assert sum(start <= moment < end for start, end in span.values()) <= 2, span
    slow_end = span[0][1]
    assert span[2][0] < slow_end and span[3][0] < slow_end, f"trials waited for the slow one: {span}"


def test_trials_in_slurm_jobs_prune_by_the_sweeps_own_rule(slurm: SlurmCluster, tmp_path: Path) -> None:
    """Each job reopens the study from its storage; Optuna's default pruner (a median after 5 trials) would
    let both run to the end, the configured threshold stops both after their first epoch."""
    journal = f"journal:///{tmp_path}/optuna.journal"
    done = explab(
        tmp_path, "hparams_search=digits_optuna", "hydra.sweeper.n_trials=2", "trainer.max_epochs=3",
        f"hydra.sweeper.storage={journal}", "hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.lower=0.999",
        "torch_threads=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="digits_cnn_optuna", storage=open_storage(journal)).trials
    assert [(t.state.name, len(t.intermediate_values)) for t in trials] == [("PRUNED", 1)] * 2


def test_detached_workers_fill_the_study_and_status_follows_them(slurm: SlurmCluster, tmp_path: Path) -> None:
    journal = f"journal:///{tmp_path}/optuna.journal"
    started = time.monotonic()
    done = explab(
        tmp_path, "hparams_search=digits_optuna", "hydra.sweeper.detach=true", "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage={journal}", "trainer.max_epochs=2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Submitted 2 worker jobs" in done.stdout + done.stderr, done.stdout[-2000:]
    assert time.monotonic() - started < 60, "it returns at once"
    counts: dict[str, int] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = run_cli("explab-sweep", "status", "digits_cnn_optuna", "--storage", journal, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        counts = {word: int(n) for n, word in re.findall(r"(\d+) (complete|pruned|failed|running)", status.stdout)}
        if counts["complete"] + counts["pruned"] == 4 and counts["running"] == 0:
            break
        time.sleep(3)
    assert counts["complete"] + counts["pruned"] == 4 and counts["failed"] == 0, status.stdout
    assert "best value" in status.stdout
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    children = [r for r in runs if "optuna.trial_number" in r.data.tags]
    assert len(children) == 4 and {r.info.status for r in children} <= {"FINISHED", "KILLED"}, "KILLED: pruned"
    for _ in range(30):  # the last worker closes the parent as it leaves
        [parent] = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if r.data.tags.get("explab.sweep")]
        if parent.info.status == "FINISHED":
            break
        time.sleep(1)
    assert parent.info.status == "FINISHED"
    workers = [j for j in slurm.settled_jobs() if j["name"] == "explab-sweep-worker"]
    assert len(workers) == 2 and {j["state"] for j in workers} == {"COMPLETED"}, slurm.jobs()


def test_an_unknown_partition_is_sbatchs_message_and_no_trial_is_left_running(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    done = explab(tmp_path, "hparams_search=digits_optuna", "hydra.launcher.partition=nowhere", timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "SLURM refused the job" in done.stderr and "invalid partition" in done.stderr.lower()
    open_storage.cache_clear()
    storage = open_storage(f"journal:///{tmp_path}/mlruns/optuna/digits_cnn.journal")
    study = optuna.load_study(study_name="digits_cnn_optuna", storage=storage)
    assert [t.state.name for t in study.trials] == ["FAIL"], "the one trial asked is failed, not left RUNNING"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hydra/launcher=basic"], "add hydra/launcher=slurm"),
        (["hydra.sweeper.storage=journal:////dev/shm/explab-test.journal"], "which only this node sees"),
        (["hydra.sweeper.storage=null"], "cannot share a study held in memory"),
    ],
)
def test_detach_without_slurm_or_a_shared_storage_is_refused(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_cli(
        "explab-train", "-m", "hparams_search=digits_optuna", "hydra/launcher=slurm", "hydra.sweeper.detach=true",
        f"paths.mlruns_dir={tmp_path}/mlruns", *args, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and message in done.stderr, done.stderr[-2000:]
    assert not Path("/dev/shm/explab-test.journal").exists()


@pytest.mark.parametrize(
    "sweep",
    [
        ["hparams_search=digits_optuna"],
        ["hparams_search=digits_optuna", "hydra.sweeper.detach=true"],
        ["seed=1,2"],  # a plain multirun: submitit's RuntimeError ended it in a traceback
        ["hydra/sweeper=basic", "seed=1,2"],
    ],
)
def test_a_slurm_sweep_on_a_machine_without_slurm_is_refused_before_its_study_exists(
    tmp_path: Path, sweep: list[str]
) -> None:
    """A laptop or a GPU server: the first trial failed with submitit's 'Could not detect "srun"', and the
    sweep stopped advising to fix the search space or the code."""
    bare = tmp_path / "bin"  # a PATH without sbatch and srun
    bare.mkdir()
    done = run_cli(
        "explab-train", "-m", *sweep, "hydra/launcher=slurm", f"paths.mlruns_dir={tmp_path}/mlruns",
        cwd=tmp_path, env={"PATH": str(bare)}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "hydra/launcher=slurm submits SLURM jobs, and this machine has no sbatch or srun" in done.stderr
    assert not (tmp_path / "mlruns").exists(), "no study, no run"


def test_a_preempted_worker_job_is_requeued_and_continues_its_trial(slurm: SlurmCluster, tmp_path: Path) -> None:
    """submitit's preemption signal (SIGUSR2) to a detached worker job: the trial writes last.ckpt at once
    (no interval would have written it yet), the job is requeued, and the requeued worker finishes the same
    trial in the same MLflow run."""
    journal = f"journal:///{tmp_path}/optuna.journal"
    epochs = 30  # long enough that the signal lands mid-trial on an idle machine too
    done = explab(
        tmp_path, "hparams_search=digits_optuna", "hydra/sweeper/pruner=none", "hydra.sweeper.detach=true",
        "hydra.sweeper.n_jobs=1", "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={journal}",
        f"trainer.max_epochs={epochs}", "data.batch_size=8", "callbacks.last_checkpoint.min_interval_seconds=3600",
        "callbacks.early_stopping.patience=1000",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    deadline = time.monotonic() + 300
    run = None
    while time.monotonic() < deadline and run is None:
        children = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
        run = children[0] if children and "val/acc" in children[0].data.metrics else None
        time.sleep(1)
    assert run is not None, "the trial trained an epoch"
    [job] = [j for j in slurm.jobs() if j["name"] == "explab-sweep-worker" and j["state"] == "RUNNING"]
    slurm.run("scancel", "--signal=USR2", job["id"])

    study = None
    deadline = time.monotonic() + 300  # the requeued job starts anew and trains the epochs left
    while time.monotonic() < deadline:
        open_storage.cache_clear()
        study = optuna.load_study(study_name="digits_cnn_optuna", storage=open_storage(journal))
        if study.trials[0].state.is_finished():
            break
        time.sleep(2)
    assert study is not None and [t.state.name for t in study.trials] == ["COMPLETE"], slurm.jobs()
    children = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
    assert [r.info.run_id for r in children] == [run.info.run_id], "the same run, continued"
    assert children[0].data.tags.get("explab.resumed_from_checkpoint"), "from the checkpoint the signal wrote"
    client = open_client(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert len(steps) == epochs and len(set(steps)) == epochs, steps


def test_a_detached_sweep_stopped_with_the_scancel_it_printed_ends_its_runs_and_goes_on_when_run_again(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    journal = f"journal:///{tmp_path}/optuna.journal"
    sweep = (
        "hparams_search=digits_optuna", "hydra/sweeper/pruner=none", "hydra.sweeper.detach=true",
        "hydra.sweeper.n_jobs=1", "hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={journal}",
        "trainer.max_epochs=30", "data.batch_size=8", "callbacks.early_stopping.patience=1000",
    )  # fmt: skip
    done = explab(tmp_path, *sweep)
    assert done.returncode == 0, done.stderr[-3000:]
    [stop] = re.findall(
        r"stop it with: (scancel [\d_ ]+) \(the same command goes on with it\)", done.stdout + done.stderr
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # the first trial is training
        children = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
        if children and "val/acc" in children[0].data.metrics:
            break
        time.sleep(1)
    slurm.run(*stop.split())
    slurm.settled_jobs()
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    [parent] = [r for r in runs if r.data.tags.get("explab.sweep")]
    [trial_run] = [r for r in runs if "optuna.trial_number" in r.data.tags]
    assert (parent.info.status, trial_run.info.status) == ("KILLED", "KILLED"), "nothing left RUNNING in MLflow"
    status = run_cli("explab-sweep", "status", "digits_cnn_optuna", "--storage", journal, cwd=tmp_path)
    assert "trial 0 released by " in status.stdout and "continues it from its last checkpoint" in status.stdout

    again = explab(tmp_path, *sweep)
    assert again.returncode == 0, again.stderr[-3000:]
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        open_storage.cache_clear()
        study = optuna.load_study(study_name="digits_cnn_optuna", storage=open_storage(journal))
        if len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials):
            break
        time.sleep(2)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"], slurm.jobs()
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    children = {r.data.tags["optuna.trial_number"]: r for r in runs if "optuna.trial_number" in r.data.tags}
    assert children["0"].info.run_id == trial_run.info.run_id, "trial 0 continued in its own run"
    assert children["0"].info.status == "FINISHED"


def test_the_example_batch_job_requeued_on_sigusr1_continues_its_run_in_the_folder_of_its_job_id(
    slurm: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/slurm/train.sbatch, submitted as its header says (with a CPU task's resources and a short
    run's overrides). SIGUSR1 (its ``--signal=USR1@90`` before the time limit, here sent at once) makes the run
    write last.ckpt and requeue the job, without Lightning's second checkpoint (``hpc_ckpt_1.ckpt``); the
    requeued job continues the same MLflow run from last.ckpt in the folder of its job id."""
    epochs = 30  # long enough that the signal lands mid-run on an idle machine too
    monkeypatch.setenv("PATH", f"{BIN}:{os.environ['PATH']}")  # the header's `source .venv/bin/activate`
    job = slurm.run(
        "sbatch", "--parsable", "--ntasks=1", "--cpus-per-task=1", "--mem=1G", f"--chdir={tmp_path}",
        str(ROOT / "examples" / "slurm" / "train.sbatch"), f"trainer.max_epochs={epochs}", "data.batch_size=8",
        "torch_threads=1", "callbacks.last_checkpoint.min_interval_seconds=3600",
        "callbacks.early_stopping.patience=1000", "log_model=false", "log_plots=false",
        "trainer.enable_progress_bar=false", f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs",
    ).stdout.strip()  # fmt: skip
    folder = tmp_path / "logs" / "digits_cnn" / "slurm" / job
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(folder.glob("checkpoints/epoch_*.ckpt")):
        time.sleep(0.5)  # the best checkpoint: an epoch has validated
    slurm.run("scancel", "--signal=USR1", job)

    deadline = time.monotonic() + 300  # the requeued job starts anew and trains the epochs left
    while time.monotonic() < deadline and next(j for j in slurm.jobs() if j["id"] == job)["state"] != "COMPLETED":
        time.sleep(2)
    output = (tmp_path / f"explab-train-{job}.out").read_text()
    assert f"SLURM job {job} requeued: its next attempt continues the run from last.ckpt" in output, output[-3000:]
    assert not list(folder.glob("hpc_*.ckpt")), "no second checkpoint that nothing reads"
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.info.status == "FINISHED", output[-3000:]
    assert f"requeued SLURM job {job} continues its MLflow run {run.info.run_id}" in output
    assert "while this run was RUNNING" not in output, "the first attempt ended its run before the requeue"
    assert run.data.tags["explab.resumed_after"].startswith("KILLED"), run.data.tags
    client = open_client(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert len(steps) == epochs and len(set(steps)) == epochs, steps


def test_a_job_slurm_will_not_requeue_is_named_with_the_fix(
    slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """scontrol's refusal is logged with what to do; the job then ends with its run KILLED and resumable."""
    monkeypatch.setenv("SLURM_JOB_ID", "999999")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    with caplog.at_level(logging.WARNING, logger="explab.requeue"):
        request_requeue()
    assert "SLURM job 999999 could not be requeued (" in caplog.text, caplog.text
    assert "sbatch --requeue" in caplog.text and "resume=RUN_ID" in caplog.text


def preempted_once(slurm: SlurmCluster, sweep: subprocess.Popen, logs: Path) -> str:
    """Send submitit's preemption signal (SIGUSR2) to the multirun's running job once an epoch has validated
    (its best checkpoint is in ``logs``); the multirun's output once it has ended."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(logs.glob("**/checkpoints/epoch_*.ckpt")):
        time.sleep(0.5)
    [job] = [j for j in slurm.jobs() if j["state"] == "RUNNING"]
    slurm.run("scancel", "--signal=USR2", job["id"])
    output, _ = sweep.communicate(timeout=400)
    return output


def test_a_multirun_job_submitit_requeues_continues_its_run(slurm: SlurmCluster, tmp_path: Path) -> None:
    """submitit's preemption signal (SIGUSR2) to a job of a plain multirun: submitit requeues it into its job
    folder, where it continues its MLflow run, and the command gets the job's result."""
    epochs = 30
    command = [
        str(BIN / "explab-train"), "-m", "hydra/launcher=slurm", *CPU_JOB, f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs", "trainer.enable_progress_bar=false", "seed=7", f"trainer.max_epochs={epochs}",
        "data.batch_size=8", "torch_threads=1", "callbacks.last_checkpoint.min_interval_seconds=3600",
        "callbacks.early_stopping.patience=1000", "log_model=false", "log_plots=false",
    ]  # fmt: skip
    sweep = subprocess.Popen(
        command, cwd=tmp_path, env=root_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = preempted_once(slurm, sweep, tmp_path / "logs")
    assert sweep.returncode == 0, output[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.info.status == "FINISHED" and run.data.tags["explab.resumed_after"].startswith("KILLED"), run.data.tags
    client = open_client(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert len(steps) == epochs and len(set(steps)) == epochs, steps


def test_a_labs_multirun_job_requeued_by_submitit_composes_with_the_labs_conf_and_continues(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    """The requeued job composes its run's config again (``resume=``): from a lab's folder, with the lab's own
    ``conf/`` and package, which the nodes find as the login node did."""
    lab = tmp_path / "lab"
    shutil.copytree(LAB, lab, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    epochs = 40
    command = [
        str(BIN / "explab-train"), "-m", "hydra/launcher=slurm", *CPU_JOB, "hydra.searchpath=[file://conf]",
        "experiment=wine_resmlp", f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs",
        "trainer.enable_progress_bar=false", "seed=7", f"trainer.max_epochs={epochs}", "data.batch_size=4",
        "torch_threads=1", "callbacks.last_checkpoint.min_interval_seconds=3600",
        "callbacks.early_stopping.patience=1000", "log_model=false", "log_plots=false",
    ]  # fmt: skip
    env = {**root_env(), "PYTHONPATH": str(lab)}
    sweep = subprocess.Popen(command, cwd=lab, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = preempted_once(slurm, sweep, tmp_path / "logs")
    assert sweep.returncode == 0, output[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "wine_resmlp")
    assert run.info.status == "FINISHED" and run.data.tags["explab.resumed_after"].startswith("KILLED"), run.data.tags
    assert run.data.params["model.backbone._target_"] == "wine_lab.backbone.ResidualMLP"
    assert run.data.tags["explab.searchpath"] == f"['file://{lab.resolve()}/conf']"
    client = open_client(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert len(steps) == epochs and len(set(steps)) == epochs, steps


def test_ctrl_c_on_a_login_node_sweep_stops_the_trial_job_it_left_running(slurm: SlurmCluster, tmp_path: Path) -> None:
    """SLURM keeps a trial's job running when the command that submitted it is stopped. The sweep fails the
    trial; the job sees that at its next epoch and stops, its run KILLED, instead of training for nobody."""
    journal = f"journal:///{tmp_path}/optuna.journal"
    command = [
        str(BIN / "explab-train"), "-m", "hydra/launcher=slurm", *CPU_JOB, f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs", "trainer.enable_progress_bar=false", "hparams_search=digits_optuna",
        "hydra/sweeper/pruner=none", "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={journal}",
        "trainer.max_epochs=3000", "callbacks.early_stopping.patience=3000", "torch_threads=1",
    ]  # fmt: skip
    sweep = subprocess.Popen(
        command, cwd=tmp_path, env=root_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=as_from_a_terminal,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "val/acc" in r.data.metrics]:
        assert time.monotonic() < deadline and sweep.poll() is None, "the trial's job trains an epoch"
        time.sleep(1)
    sweep.send_signal(signal.SIGINT)
    sweep.communicate(timeout=60)
    jobs = slurm.settled_jobs(timeout=120)
    assert not [j for j in jobs if j["state"] in ("PENDING", "RUNNING")], jobs
    [run] = [r for r in runs_in(tmp_path / "mlruns", "digits_cnn") if "optuna.trial_number" in r.data.tags]
    assert run.info.status == "KILLED" and run.data.tags["explab.status_reason"].startswith("TrialEnded: "), (
        run.info.status, run.data.tags.get("explab.status_reason"), slurm.logs()[-3000:],
    )  # fmt: skip
    open_storage.cache_clear()
    [trial] = optuna.load_study(study_name="digits_cnn_optuna", storage=open_storage(journal)).trials
    assert trial.state.name == "FAIL"
