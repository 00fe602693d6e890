"""Checks made before any run exists: values Lightning would refuse only once it trains, and what this
machine lacks."""

from __future__ import annotations

import re
from typing import get_args

import pytest
import torch
from omegaconf import OmegaConf

from explab.build import build_model
from explab.checkpoints import CheckpointError
from explab.errors import ConfigError, UsageError
from explab.monitor_mode import settle_modes
from explab.sweep.checks import check_job_config
from explab.validation import (
    LIGHTNING_PRECISIONS,
    _gpus_wanted,
    check_devices_here,
    check_slurm_tasks,
    check_start_checkpoint,
    check_values,
    missing_values,
    validate_config,
)

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


@pytest.mark.parametrize("devices", [1, 2, -1, "auto", "[0,1]", "'0,1'", "'1,'", "'2'"])
def test_forms_of_devices_lightning_takes_pass(compose_cfg, devices) -> None:
    validate_config(compose_cfg("trainer=ddp_cpu", f"trainer.devices={devices}"))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("devices", "0"),
        ("devices", "'0'"),
        ("devices", "[]"),
        ("devices", "-2"),
        ("devices", "two"),
        ("num_nodes", "0"),
    ],
)
def test_no_devices_or_nodes_at_all_is_refused_before_the_run(compose_cfg, key: str, value: str) -> None:
    cfg = compose_cfg("trainer=multinode", f"trainer.{key}={value}")
    with pytest.raises(ConfigError, match=rf"trainer.{key}=.* is not valid: trainer.{key} must be"):
        validate_config(cfg)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("val_check_interval", "1.5"),  # Lightning refused it once the run existed, with a traceback
        ("val_check_interval", "0"),
        ("val_check_interval", "-1"),
        ("limit_val_batches", "1.5"),
        ("limit_train_batches", "-2"),
        ("gradient_clip_algorithm", "max"),
        ("max_time", "1h"),  # Lightning refused it as it built its trainer, with a traceback
        ("max_time", "00:01:00"),
        ("max_time", "00:00:00:00"),
        ("max_time", "{hourz: 1}"),
    ],
)
def test_batch_amounts_clipping_and_time_limits_lightning_would_refuse_in_the_run_are_refused(
    compose_cfg, key: str, value: str
) -> None:
    cfg = compose_cfg(f"+trainer.{key}={value}")
    with pytest.raises(ConfigError, match=rf"trainer.{key}=.* is not valid: trainer.{key} must be"):
        validate_config(cfg)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("val_check_interval", "0.25"),  # four times an epoch
        ("val_check_interval", "1.0"),
        ("val_check_interval", "5"),  # every 5 batches
        ("limit_val_batches", "0"),  # no validation
        ("limit_train_batches", "0.5"),
        ("limit_test_batches", "3"),
        ("gradient_clip_algorithm", "value"),
        ("max_time", "00:12:00:00"),
        ("max_time", "{hours: 12}"),
    ],
)
def test_batch_amounts_clipping_and_time_limits_lightning_takes_pass(compose_cfg, key: str, value: str) -> None:
    overrides = [f"+trainer.{key}={value}"]
    if key == "limit_val_batches":
        overrides.append("callbacks=none")  # nothing then follows a validation metric
    validate_config(compose_cfg(*overrides))


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        # Lightning refused the fraction when it built the trainer, once the run existed
        (
            ["+trainer.val_check_interval=0.5"],
            "trainer.val_check_interval=0.5 is not valid: .*batches \\(an integer\\)",
        ),
        # the plateau steps at each epoch's end; before the first validation, Lightning failed the fit there
        (
            ["+trainer.val_check_interval=30", "scheduler=plateau"],
            "trainer.check_val_every_n_epoch=None is not valid: .* a scheduler that follows val/acc",
        ),
    ],
)
def test_validation_across_epochs_that_lightning_would_fail_is_refused(compose_cfg, overrides, refused) -> None:
    cfg = compose_cfg("trainer.check_val_every_n_epoch=null", *overrides)
    with pytest.raises(ConfigError, match=refused):
        check_values(cfg)


@pytest.mark.parametrize(
    "overrides",
    [
        ["+trainer.val_check_interval=30"],
        ["scheduler=plateau"],  # no interval: once an epoch, as with 1
        ["+trainer.val_check_interval=30", "scheduler=plateau", "scheduler.monitor=train/loss"],
    ],
)
def test_validation_across_epochs_lightning_takes_passes(compose_cfg, overrides) -> None:
    validate_config(compose_cfg("trainer.check_val_every_n_epoch=null", *overrides))


@pytest.mark.parametrize("precision", ["auto", "32-true", "bf16-mixed", "16-mixed", "64-true", "32", 16])
def test_precisions_lightning_takes_pass(compose_cfg, precision) -> None:
    validate_config(compose_cfg(f"trainer.precision={precision}"))


def test_a_precision_lightning_does_not_take_is_refused(compose_cfg) -> None:
    with pytest.raises(ConfigError, match=r"trainer.precision='fp16' is not valid.*auto, 32-true, bf16-mixed"):
        validate_config(compose_cfg("trainer.precision=fp16"))


def test_the_precisions_explab_accepts_are_the_ones_lightning_takes() -> None:
    """explab lists Lightning's precisions to answer a typo without importing Lightning; a Lightning that adds
    or drops one fails here, not in a researcher's run."""
    from lightning.fabric.plugins.precision.precision import (
        _PRECISION_INPUT_INT,
        _PRECISION_INPUT_STR,
        _PRECISION_INPUT_STR_ALIAS,
    )

    lightnings = [
        *get_args(_PRECISION_INPUT_STR),
        *get_args(_PRECISION_INPUT_INT),
        *get_args(_PRECISION_INPUT_STR_ALIAS),
    ]
    assert sorted(map(repr, LIGHTNING_PRECISIONS)) == sorted(map(repr, lightnings))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["monitor=val/accuracy"], "monitor"),  # every callback that follows ${monitor}: the root key is named
        (["callbacks.early_stopping.monitor=val/acc_bset"], "callbacks.early_stopping.monitor"),
        (["monitor=test/acc"], "monitor"),  # logged, but only after the fit the callbacks follow it in
    ],
)
def test_a_monitor_the_task_never_logs_during_fit_is_refused(compose_cfg, overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}=.* must be a metric this task logs: one of train/acc, .*val/loss"):
        validate_config(compose_cfg(*overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        ["monitor=val/loss", "monitor_mode=min"],
        ["monitor=perf/epoch_seconds", "monitor_mode=min"],  # timings and learning rates come from callbacks
        ["experiment=diabetes_mlp"],  # a regression task follows its own metrics
    ],
)
def test_monitors_the_task_or_its_callbacks_log_pass(compose_cfg, overrides: list[str]) -> None:
    validate_config(compose_cfg(*overrides))


def test_missing_values_are_found_without_resolving_hydras_node() -> None:
    """In a sweep's process ``hydra.sweep.subdir`` points at ``hydra.job.num``, which only a job has."""
    cfg = OmegaConf.create(
        {
            "data": {"batch_size": "???", "sizes": [8, "???"]},
            "lr": "${data.batch_size}",
            "hydra": {"job": {"num": "???"}, "sweep": {"subdir": "${hydra.job.num}"}},
        }
    )
    assert missing_values(cfg) == ["data.batch_size", "data.sizes[1]"]


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


def test_weights_that_do_not_fit_are_named_by_key_and_shape() -> None:
    from torch import nn

    from explab.checkpoints import weights_mismatch

    with torch.device("meta"):  # as the check builds the model
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert weights_mismatch(model, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).state_dict()) == ""
    wider = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2), nn.Linear(2, 2)).state_dict()
    assert weights_mismatch(model, wider) == (
        "the model lacks 3.bias, 3.weight; shapes differ: 0.bias [16] in the checkpoint, [8] in the model, "
        "0.weight [16, 4] in the checkpoint, [8, 4] in the model, "
        "2.weight [2, 16] in the checkpoint, [2, 8] in the model"
    )
    # saved from a run whose backbone torch.compile wrapped: the same weights under backbone._orig_mod
    task = nn.Module()
    task.backbone = model
    compiled = {f"backbone._orig_mod.{key.removeprefix('backbone.')}": v for key, v in task.state_dict().items()}
    assert weights_mismatch(task, compiled) == ""


@pytest.mark.parametrize("key", ["monitor_mode", "callbacks.model_checkpoint.mode"])
def test_a_mode_that_is_neither_min_max_nor_auto_is_refused(compose_cfg, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}='up' is not valid: {key} must be min, max or auto"):
        validate_config(compose_cfg(f"{key}=up"))


@pytest.mark.parametrize(
    ("overrides", "key", "fix"),
    [
        (["monitor=val/loss", "monitor_mode=max"], "monitor_mode", "min"),
        (["experiment=diabetes_mlp", "monitor=val/r2", "monitor_mode=min"], "monitor_mode", "max"),
        # a callback following a metric of its own in the root's mode
        (["callbacks.early_stopping.monitor=val/loss", "monitor_mode=max"], "callbacks.early_stopping.mode", "min"),
    ],
)
def test_a_mode_against_what_the_metrics_name_says_is_refused(compose_cfg, overrides, key: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}='(min|max)' is not valid: {key} must be {fix} \(or auto\)"):
        validate_config(compose_cfg(*overrides))


@pytest.mark.parametrize(
    ("overrides", "refusal"),
    [
        (["scheduler.monitor=val/accuracy"], r"^scheduler.monitor='val/accuracy' .* a metric this task logs"),
        (["scheduler.mode=triangular"], r"^scheduler.mode='triangular' .* must be min, max or auto"),
        (["scheduler.mode=min"], r"^scheduler.mode='min' .* must be max \(or auto\) for val/acc"),
        # nothing would step it: Lightning fails the fit at its first epoch's end
        (["data.val_fraction=0"], r"^scheduler.monitor='val/acc' .* this run does not validate"),
    ],
)
def test_a_plateau_scheduler_following_what_it_cannot_is_refused(compose_cfg, overrides, refusal: str) -> None:
    with pytest.raises(ConfigError, match=refusal):
        validate_config(compose_cfg("scheduler=plateau", *overrides))


def test_auto_for_a_metric_whose_name_says_neither_way_is_refused(compose_cfg) -> None:
    with pytest.raises(ConfigError, match=r"^monitor_mode='auto' .* must be min or max for lr-Adam, whose name"):
        validate_config(compose_cfg("monitor=lr-Adam"))
    validate_config(compose_cfg("monitor=lr-Adam", "monitor_mode=max"))


def test_auto_gives_each_callback_the_mode_its_own_metric_needs(compose_cfg) -> None:
    from explab.build import build_callbacks
    from explab.callbacks.stock import EarlyStopping, ModelCheckpoint

    cfg = compose_cfg("callbacks.early_stopping.monitor=val/loss")
    validate_config(cfg)
    settle_modes(cfg)  # as build_job does first
    callbacks = build_callbacks(cfg, run_id=None, has_logger=False)
    modes = {type(c): c.mode for c in callbacks if isinstance(c, EarlyStopping | ModelCheckpoint) and c.monitor}
    assert modes == {EarlyStopping: "min", ModelCheckpoint: "max"}  # val/loss, and the root's val/acc


def test_held_out_fractions_that_leave_nothing_to_train_on_are_refused(compose_cfg) -> None:
    validate_config(compose_cfg("data.val_fraction=0.5", "data.test_fraction=0.49"))
    with pytest.raises(
        ConfigError, match=r"data.test_fraction=0.99 is not valid: .* below 0.85 beside data.val_fraction=0.15"
    ):
        validate_config(compose_cfg("data.test_fraction=0.99"))


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("data.vocab_size=2", "an integer >= 3 (two entries are padding and unknown words)"),
        ("data.max_len=0", "an integer >= 1"),
        ("data.min_freq=0", "an integer >= 1"),
    ],
)
def test_a_text_setting_that_leaves_no_word_is_refused(compose_cfg, value: str, allowed: str) -> None:
    """A vocabulary without a word, or texts cut to nothing, would train to chance (or fail inside the fit)."""
    with pytest.raises(ConfigError, match=re.escape(f"{value.split('=')[0]} must be {allowed}")):
        validate_config(compose_cfg("experiment=rotten_tomatoes_fasttext", value))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["scheduler=onecycle", "trainer.max_epochs=-1", "+trainer.max_time=00:00:00:05"], "scheduler.total_steps"),
        (["scheduler=cosine", "trainer.max_epochs=-1", "+trainer.max_steps=30"], "scheduler.T_max"),
        (["scheduler=cosine", "trainer.max_epochs=null", "+trainer.max_steps=30"], "scheduler.T_max"),
    ],
)
def test_a_scheduler_length_the_trainer_does_not_bound_is_refused(compose_cfg, overrides, key: str) -> None:
    """OneCycleLR over an endless run failed in its first step; a cosine over "-1 epochs" got one epoch."""
    with pytest.raises(ConfigError, match=rf"{key}=None is not valid: {key} must be .*\(trainer.max_epochs="):
        validate_config(compose_cfg(*overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        ["scheduler=onecycle", "trainer.max_epochs=-1", "+trainer.max_steps=30"],
        ["scheduler=onecycle", "trainer.max_epochs=null"],
        ["scheduler=cosine", "trainer.max_epochs=-1", "scheduler.T_max=3"],
        ["scheduler=onecycle", "trainer.max_epochs=-1", "scheduler.total_steps=100"],
        ["scheduler=cosine", "trainer.max_epochs=4"],
    ],
)
def test_a_scheduler_length_the_trainer_or_the_config_gives_passes(compose_cfg, overrides) -> None:
    validate_config(compose_cfg(*overrides))
