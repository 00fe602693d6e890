"""Checks made before any run exists: a GPU trainer on a machine where torch sees too few GPUs."""

from __future__ import annotations

import pytest
import torch

from explab.errors import UsageError
from explab.sweep.checks import check_job_config
from explab.validation import _gpus_wanted, check_devices_here

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


def test_a_sweep_checks_the_gpus_of_the_machine_its_jobs_run_on(compose_cfg) -> None:
    """Jobs of the basic launcher train here; a SLURM sweep is sent from a login node without GPUs."""
    gpu_job = ("hparams_search=digits_optuna", "trainer=gpu", f"trainer.devices={TOO_MANY}")
    with pytest.raises(UsageError, match=f"needs {TOO_MANY} GPU"):
        check_job_config(compose_cfg(*gpu_job), "val/acc_best")
    check_job_config(compose_cfg(*gpu_job, "hydra/launcher=slurm"), "val/acc_best")
