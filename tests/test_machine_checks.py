"""Checks of the machine that trains, made before any run exists: the GPUs torch sees, the tasks SLURM
started, and the checkpoint a fit starts from."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from explab.build import build_model
from explab.checkpoints import CheckpointError
from explab.errors import UsageError
from explab.machine_checks import (
    _gpus_wanted,
    check_devices_here,
    check_precision_library,
    check_slurm_tasks,
    check_start_checkpoint,
)
from explab.sweep.checks import check_job_config

TOO_MANY = torch.cuda.device_count() + 1  # more GPUs than this machine shows, whatever it is


@pytest.mark.parametrize(
    ("devices", "wanted"), [(1, 1), (4, 4), ("4", 4), ([0, 2], 3), ("0,2", 3), ("1,", 2), (-1, 1), ("auto", 1)]
)
def test_gpus_wanted_reads_lightnings_forms_of_devices(devices, wanted: int) -> None:
    assert _gpus_wanted(devices) == wanted


@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_a_gpu_trainer_asking_for_more_gpus_than_torch_sees_is_refused(compose_cfg, accelerator: str) -> None:
    cfg = compose_cfg("trainer=gpu", f"trainer.accelerator={accelerator}", f"trainer.devices={TOO_MANY}")
    with pytest.raises(UsageError, match=rf"accelerator={accelerator} .* needs {TOO_MANY} GPU.*trainer=default"):
        check_devices_here(cfg)


def test_a_trainer_that_takes_what_there_is_is_not_checked(compose_cfg) -> None:
    check_devices_here(compose_cfg(f"trainer.devices={TOO_MANY}"))  # accelerator auto: Lightning picks the CPU here
    check_devices_here(compose_cfg("trainer=cpu"))


NO_GPU = not (torch.cuda.is_available() or torch.backends.mps.is_available())


ON_THE_CPU_HERE = pytest.mark.skipif(not NO_GPU, reason="auto takes this machine's GPUs")


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        (
            ("trainer=cpu", "trainer.devices=[0]"),
            r"\[0\] .* trainer.accelerator=cpu counts CPU processes: give trainer.devices=1 to train in 1 process on",
        ),
        pytest.param(
            ("trainer.devices=[0,1]",),
            r"\[0, 1\] .* torch sees no GPU here: give trainer.devices=2 to train in 2 processes",
            marks=ON_THE_CPU_HERE,
        ),
        pytest.param(("trainer.devices='0,2'",), r"0,2 names GPUs .* trainer.devices=2", marks=ON_THE_CPU_HERE),
    ],
)
def test_device_indices_for_a_trainer_on_the_cpu_are_refused_with_the_count(compose_cfg, overrides, said) -> None:
    """A command copied from a GPU server (``trainer.devices=[0,1]``) failed the run on a CPU as Lightning built
    the trainer: "devices selected with CPUAccelerator should be an int > 0", after the run existed."""
    with pytest.raises(UsageError, match=said):
        check_devices_here(compose_cfg(*overrides))
    check_devices_here(compose_cfg("trainer=cpu", "trainer.devices=2"))


@pytest.mark.skipif(importlib.util.find_spec("transformer_engine") is not None, reason="it is installed here")
def test_a_precision_whose_library_is_not_installed_is_refused(compose_cfg) -> None:
    """Lightning found Transformer Engine missing only as it built the trainer, and failed the run it was in."""
    with pytest.raises(UsageError, match=r"transformer-engine trains through .* not installed"):
        check_precision_library(compose_cfg("trainer.precision=transformer-engine"))
    check_precision_library(compose_cfg("trainer.precision=bf16-mixed"))


def test_a_sweep_checks_the_gpus_of_the_machine_its_jobs_run_on(compose_cfg) -> None:
    """Jobs of the basic launcher train here; a SLURM sweep is sent from a login node without GPUs."""
    gpu_job = ("hparams_search=digits_optuna", "trainer=gpu", f"trainer.devices={TOO_MANY}")
    with pytest.raises(UsageError, match=f"needs {TOO_MANY} GPU"):
        check_job_config(compose_cfg(*gpu_job), "val/acc_best")
    check_job_config(compose_cfg(*gpu_job, "hydra/launcher=slurm"), "val/acc_best")


def _in_a_slurm_task(monkeypatch: pytest.MonkeyPatch, per_node: str, nodes: str) -> dict[str, str]:
    """The variables srun gives a task of a job submitted with --ntasks-per-node and --nodes (those read here)."""
    tasks = str(int(per_node) * int(nodes))
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "train", "SLURM_NTASKS": tasks, "SLURM_STEP_NUM_TASKS": tasks}
    env |= {"SLURM_NTASKS_PER_NODE": per_node, "SLURM_NNODES": nodes}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.mark.filterwarnings("ignore:The `srun` command is available")  # Lightning's, in the interactive job
def test_a_ddp_trainer_whose_processes_are_not_the_slurm_jobs_tasks_is_refused(compose_cfg, monkeypatch) -> None:
    """Lightning refused it once the run existed, which then ended FAILED, with its traceback."""
    _in_a_slurm_task(monkeypatch, per_node="1", nodes="1")
    with pytest.raises(UsageError, match=r"trainer.devices=2 trains in 2 DDP processes on each node") as refused:
        check_slurm_tasks(compose_cfg("trainer=ddp_cpu"))
    assert (
        "(--ntasks-per-node=1). Submit it with --ntasks-per-node=2, one task per device, or set trainer.devices=1"
        in (str(refused.value))
    )
    with pytest.raises(UsageError, match=r"Submit it with --nodes=2, or set trainer.num_nodes=1$"):
        check_slurm_tasks(compose_cfg("trainer=ddp_cpu", "trainer.devices=1", "+trainer.num_nodes=2"))
    check_slurm_tasks(compose_cfg("trainer=cpu"))  # one process in one task
    _in_a_slurm_task(monkeypatch, per_node="2", nodes="1")
    check_slurm_tasks(compose_cfg("trainer=ddp_cpu"))  # a task per process
    check_slurm_tasks(compose_cfg("trainer=ddp_cpu", "trainer.strategy=ddp_spawn", "trainer.devices=3"))
    with pytest.raises(UsageError, match=r"has 2 tasks, and trainer.devices=1 trains in one process: each task"):
        check_slurm_tasks(compose_cfg("trainer=cpu"))
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    monkeypatch.setenv("SLURM_STEP_NUM_NODES", "2")
    with pytest.raises(UsageError, match=r"trainer=multinode trainer.devices=4 trainer.num_nodes=2$"):
        check_slurm_tasks(compose_cfg("trainer=cpu"))
    monkeypatch.delenv("SLURM_STEP_NUM_TASKS")  # the batch script's own step: one process, whatever the job has
    check_slurm_tasks(compose_cfg("trainer=cpu"))
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # Lightning's way to start the processes itself
    check_slurm_tasks(compose_cfg("trainer=ddp_cpu", "trainer.devices=3"))


def test_a_slurm_task_short_of_the_ddp_processes_is_refused_before_the_run_exists(tmp_path, monkeypatch) -> None:
    from tests.conftest import run_cli

    env = _in_a_slurm_task(monkeypatch, per_node="1", nodes="1")
    done = run_cli("explab-train", "trainer=ddp_cpu", f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Submit it with --ntasks-per-node=2, one task per device" in done.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists(), "no run was created to end FAILED"


@pytest.mark.parametrize("name", ["last", "best", "hpc", "registry:my-model:latest", "s3://bucket/epoch_009.ckpt"])
def test_checkpoints_lightning_finds_itself_are_left_to_it(compose_cfg, name: str) -> None:
    check_start_checkpoint(compose_cfg(f"ckpt_path='{name}'"))


def test_a_start_checkpoint_that_is_not_here_is_refused(compose_cfg, tmp_path) -> None:
    with pytest.raises(UsageError, match=r"ckpt_path=.*gone.ckpt: no such file here.*resume=RUN_ID"):
        check_start_checkpoint(compose_cfg(f"ckpt_path={tmp_path}/gone.ckpt"))
    (tmp_path / "cut.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"cut.ckpt is truncated \(0 bytes\)"):
        check_start_checkpoint(compose_cfg(f"ckpt_path={tmp_path}/cut.ckpt"))
    # a Lightning checkpoint of this model that explab did not write: no settings recorded to check it against
    cfg = compose_cfg(f"ckpt_path={tmp_path}/here.ckpt")
    torch.save({"state_dict": build_model(cfg).state_dict(), "optimizer_states": []}, tmp_path / "here.ckpt")
    check_start_checkpoint(cfg)
