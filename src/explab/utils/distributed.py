"""What a job must arrange so Lightning's DDP works the same in a single run and inside a sweep."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import torch
from omegaconf import DictConfig, read_write

from explab.utils.cores import cores_each, usable_cores
from explab.utils.environment import variables_restored
from explab.utils.logging import get_logger

log = get_logger(__name__)

# set in this process by Lightning's launcher when it starts the other ranks
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def processes_per_node(trainer_cfg: DictConfig) -> int:
    """How many training processes share this machine's cores (1 unless CPU DDP)."""
    devices = trainer_cfg.get("devices", 1)
    if trainer_cfg.get("accelerator") != "cpu" or not isinstance(devices, int) or devices < 1:
        return 1
    return devices


def configure_threads(cfg: DictConfig) -> None:
    """``torch_threads`` if set; else split the cores this process may use between the CPU processes of this
    node."""
    threads, procs = cfg.get("torch_threads"), processes_per_node(cfg.trainer)
    if not threads:
        if procs == 1:
            return
        threads = cores_each(procs)
    elif int(threads) * procs > usable_cores():
        # more threads than cores: each waits for a core at every parallel operation, and steps slow down
        log.warning(
            "torch_threads=%s in each of %d training process(es) runs %d threads on the %d cores this process may "
            "use (its CPU affinity: a SLURM allocation, taskset, a container): the threads beyond them wait on "
            "each other. Give torch_threads=%d, or leave it null to share the cores out",
            threads,
            procs,
            int(threads) * procs,
            usable_cores(),
            cores_each(procs),
        )
    torch.set_num_threads(int(threads))


@contextmanager
def ddp_launch_scoped_to_job() -> Iterator[None]:
    """Lightning's DDP launcher starts ranks 1..N by re-running ``sys.argv`` with ``hydra.run.dir``.

    Inside a multirun, ``sys.argv`` is the whole sweep (``-m``, sampling overrides): each rank would run the
    sweep again and draw its own hyperparameters. For the time of the job, ``sys.argv`` becomes this job's
    concrete overrides and ``hydra.run.dir`` its output folder, so every rank trains the same trial and
    writes to one place. Afterwards the process group is torn down and the launcher's environment
    variables removed, so the next trial starts its own ranks on a fresh port.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if not in_sweep:
        try:
            yield
        finally:
            _destroy_process_group()
        return
    hydra_cfg = cast(DictConfig, HydraConfig.get())  # a DictConfig at run time, typed as its schema
    saved_argv, saved_dir = sys.argv[:], hydra_cfg.run.dir
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    # the launcher's variables go too: else the next trial finds LOCAL_RANK and starts no ranks
    with variables_restored(*LAUNCHER_ENV):
        try:
            yield
        finally:
            sys.argv = saved_argv
            with read_write(hydra_cfg):
                hydra_cfg.run.dir = saved_dir
            _destroy_process_group()


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
