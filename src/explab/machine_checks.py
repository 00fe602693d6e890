"""What only the machine that trains can answer, before any run exists: the GPUs torch sees, the tasks SLURM
started, the start checkpoint and the data files, and whether the run's output folder is free.

The config's own values, which any machine can check, are ``explab.validation``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from explab.errors import UsageError, counted


def check_machine(cfg: DictConfig) -> None:
    """The GPUs, the precision's library, SLURM's tasks, the start checkpoint and the data files, in that order.

    Called where the job trains, and by a sweep only for jobs it runs on its own machine: a sweep sent from a
    login node runs its jobs on nodes with their own GPUs and mounts.
    """
    from explab.build import build_datamodule

    check_devices_here(cfg)
    check_precision_library(cfg)
    check_slurm_tasks(cfg)
    check_start_checkpoint(cfg)
    build_datamodule(cfg).check_source()


def check_start_checkpoint(cfg: DictConfig) -> None:
    """``ckpt_path`` (fit from a checkpoint, into a new run) names a file this machine has; Lightning's own
    names (``last``, ``best``, ``hpc``, ``registry``) and remote URLs are Lightning's to find."""
    path = cfg.get("ckpt_path")
    if not path or str(path).split(":")[0] in ("last", "best", "hpc", "registry") or "://" in str(path):
        return
    if cfg.get("resume"):
        return  # the run's own last.ckpt, which resume_checks.check_resumable read and checked
    start = Path(str(path)).expanduser()
    try:
        missing = not start.is_file()
    except PermissionError:  # a folder on its way this account may not enter, which load_checkpoint names
        missing = False
    if missing:
        raise UsageError(
            f"ckpt_path={path}: no such file here. Give the path of a .ckpt file, or resume=RUN_ID to continue "
            "an MLflow run from its own last checkpoint"
        )
    from explab.resume_checks import check_fit_from_checkpoint

    check_fit_from_checkpoint(cfg, start)


def check_output_folder_free(cfg: DictConfig) -> None:
    """A new run's output folder holds no other run's ``last.ckpt``.

    The new run would overwrite it, and the run it belongs to could no longer be resumed: the same
    ``hydra.run.dir`` given twice, or a multirun run again into its ``hydra.sweep.dir``. Each run gets a folder
    of its own unless one is given; a resume writes on in its own run's folder, DDP ranks 1..N in rank 0's, and
    a SLURM job requeued into its folder (``hydra.run.dir=/shared/runs/$SLURM_JOB_ID``) in its first attempt's,
    whose run it continues (``explab.requeue``). Only where the job trains: a sweep's check of its jobs has no
    job folder.
    """
    from explab.requeue import restart_count
    from explab.utils.logging import global_rank

    if cfg.get("resume") or global_rank() != 0 or restart_count() > 0:
        return
    from explab.resume_checks import last_checkpoint_in

    output_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if not output_dir or not (last := last_checkpoint_in(str(output_dir))).is_file():
        return
    from explab.checkpoints import CheckpointError, load_checkpoint, recorded_config

    try:
        owner = recorded_config(load_checkpoint(last), last).get("mlflow_run_id")
    except CheckpointError:
        owner = None  # a torn file, or one not explab's, still names a folder that is taken
    whose = f"MLflow run {owner}" if owner else "an earlier run"
    resume = f", or continue that run with resume={owner}" if owner else ""
    raise UsageError(
        f"{last.parent.parent} already holds the last checkpoint of {whose}: a new run there would overwrite it, "
        f"and that run could no longer be resumed. Give this run a folder of its own (leave hydra.run.dir and "
        f"hydra.sweep.dir out, and each run gets a new one){resume}"
    )


def check_devices_here(cfg: DictConfig) -> None:
    """Refuse a trainer that asks this machine for more GPUs than torch sees, naming what it sees.

    Lightning refuses it too, but only once the Trainer is built, after the run exists (which then ends
    FAILED for a config it could never have run).
    """
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto")).lower()
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    if accelerator in ("auto", "cpu") and _device_indices(devices):
        _refuse_indices_of_no_gpu(accelerator, devices)
    if accelerator not in ("gpu", "cuda"):
        return  # auto takes what there is; cpu and mps are Lightning's to check
    import torch

    if accelerator == "gpu" and torch.backends.mps.is_available():
        return
    present = torch.cuda.device_count()
    wanted = _gpus_wanted(devices)
    # torchrun shows each process the one GPU it uses, and Lightning accepts more devices than it sees there
    torchrun = torch.distributed.is_available() and torch.distributed.is_torchelastic_launched()
    if present >= wanted or (present == 1 and torchrun):
        return
    import os
    import socket

    if torch.version.cuda is None:
        why = f"this torch ({torch.__version__}) is built without CUDA"
    else:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        shown = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        why = f"torch sees {present} on {socket.gethostname()}{shown}"
    fix = f"lower trainer.devices to {present}" if present else "train on the CPU with trainer=cpu"
    raise UsageError(
        f"trainer.accelerator={accelerator} with trainer.devices={devices} needs {counted(wanted, 'GPU')}, and "
        f"{why}. Use trainer=default, which takes the GPUs there are and else the CPU, or {fix}"
    )


def check_precision_library(cfg: DictConfig) -> None:
    """``trainer.precision=transformer-engine`` needs NVIDIA's Transformer Engine installed here; Lightning
    found it missing only as it built the trainer, after the run existed."""
    import importlib.util

    precision = str(OmegaConf.select(cfg, "trainer.precision", default=""))
    if precision.startswith("transformer-engine") and importlib.util.find_spec("transformer_engine") is None:
        raise UsageError(
            f"trainer.precision={precision} trains through NVIDIA's Transformer Engine, which is not installed "
            "in this environment: install transformer_engine (it needs a CUDA GPU), or train in "
            "precision=bf16-mixed"
        )


def _device_indices(devices: Any) -> list[str]:
    """The device indices ``devices`` names (``[0, 1]``, ``"0,1"``); none for a count, ``-1`` or ``auto``."""
    if isinstance(devices, str) and "," in devices:
        return [index.strip() for index in devices.split(",") if index.strip()]
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return [str(index) for index in devices]
    return []


def _refuse_indices_of_no_gpu(accelerator: str, devices: Any) -> None:
    """Device indices name GPUs: Lightning takes only a count of CPU processes, and fails the run as it builds
    the trainer ("devices selected with CPUAccelerator should be an int > 0") where the trainer runs on the CPU,
    as a command copied from a GPU server does on a laptop."""
    import torch

    if accelerator == "auto" and (torch.cuda.is_available() or torch.backends.mps.is_available()):
        return
    count = len(_device_indices(devices))
    where = "trainer.accelerator=cpu counts CPU processes" if accelerator == "cpu" else "torch sees no GPU here"
    raise UsageError(
        f"trainer.devices={devices} names GPUs by their index, and {where}: give trainer.devices={count} to train "
        f"in {count} process{'' if count == 1 else 'es'} on the CPU, or run it on a machine with GPUs"
    )


def check_slurm_tasks(cfg: DictConfig) -> None:
    """In a task SLURM started, a DDP trainer's processes are SLURM's tasks: ``trainer.devices`` must be the
    job's tasks per node and ``trainer.num_nodes`` its nodes; and a trainer of one process needs one task.

    Lightning refuses a DDP mismatch too, but only once the run exists (which then ends FAILED), with a
    traceback; ``devices=-1`` or ``auto`` is counted by Lightning, which checks it then. A one-process trainer
    in a job of several tasks trained the same model in every task, recorded by the first alone.
    """
    import os

    from explab.requeue import is_slurm_task

    trainer = cfg.get("trainer") or {}
    strategy = str(trainer.get("strategy", "auto"))
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    tasks = os.environ.get("SLURM_STEP_NUM_TASKS", "")  # srun's step; a batch script's own step has none
    one_process = strategy in ("auto", "single_device") and str(devices) == "1" and str(nodes) == "1"
    if one_process and tasks.isdigit() and int(tasks) > 1 and is_slurm_task():
        step_nodes = int(os.environ.get("SLURM_STEP_NUM_NODES") or 1)
        raise UsageError(
            f"this SLURM job step has {tasks} tasks, and trainer.devices=1 trains in one process: each task would "
            "train the same model, and only the first would record it. Start one task (srun --ntasks=1, or "
            f"hydra.launcher.tasks_per_node=1), or train in DDP over the tasks with trainer=multinode "
            f"trainer.devices={int(tasks) // step_nodes} trainer.num_nodes={step_nodes}"
        )
    # ddp_spawn, ddp_fork and ddp_notebook start their processes themselves, inside one task
    if not strategy.startswith("ddp") or any(k in strategy for k in ("spawn", "fork", "notebook")):
        return
    if not is_slurm_task():
        return
    per_node, job_nodes = os.environ.get("SLURM_NTASKS_PER_NODE"), os.environ.get("SLURM_NNODES")
    if str(devices).isdigit() and per_node and per_node.isdigit() and int(devices) != int(per_node):
        raise UsageError(
            f"trainer.devices={devices} trains in {devices} DDP processes on each node, which SLURM starts as the "
            f"job's tasks, and this job has {counted(int(per_node), 'task')} per node "
            f"(--ntasks-per-node={per_node}). Submit it with --ntasks-per-node={devices}, one task per device, "
            f"or set trainer.devices={per_node}"
        )
    if str(nodes).isdigit() and job_nodes and job_nodes.isdigit() and int(nodes) != int(job_nodes):
        raise UsageError(
            f"trainer.num_nodes={nodes}, and this SLURM job has {counted(int(job_nodes), 'node')} "
            f"(--nodes={job_nodes}). Submit it with --nodes={nodes}, or set trainer.num_nodes={job_nodes}"
        )


def _gpus_wanted(devices: Any) -> int:
    """How many GPUs Lightning's ``devices`` needs visible: a count, the highest index of a list (also as
    "0,2"), and at least one for -1 or "auto"."""
    indices = _device_indices(devices)
    if indices:
        return max(int(index) + 1 for index in indices)
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        return devices
    return 1
