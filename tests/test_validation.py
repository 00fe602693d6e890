"""Config values checked before any run exists: values Lightning would refuse only once it trains, metrics
that are never logged, and modes against what a metric's name says."""

from __future__ import annotations

import re
from typing import get_args

import pytest
from omegaconf import OmegaConf

from explab.errors import ConfigError, UsageError
from explab.monitor_mode import settle_modes
from explab.validation import LIGHTNING_PRECISIONS, check_values, missing_values, validate_config


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
    ("key", "value", "lightning_took_it"),
    [
        # Lightning turns min_delta's sign by the mode: a worse value counted as an improvement, never stopping
        ("callbacks.early_stopping.min_delta", "-0.1", True),
        # no best kept: the run tested and logged its last epoch as its best, and explab-eval found no checkpoint
        ("callbacks.model_checkpoint.save_top_k", "0", True),
        ("callbacks.model_checkpoint.save_top_k", "-2", False),  # refused by Lightning once the run existed
    ],
)
def test_callback_settings_that_keep_no_best_or_never_stop_are_refused(
    compose_cfg, key: str, value: str, lightning_took_it: bool
) -> None:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    cfg = compose_cfg(f"{key}={value}")
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}={value} is not valid: {re.escape(key)} must be"):
        validate_config(cfg)
    callback = EarlyStopping if "early_stopping" in key else ModelCheckpoint
    leaf = key.rsplit(".", 1)[-1]
    if lightning_took_it:  # the check is explab's: Lightning builds the callback without a word
        callback(monitor="val/acc", mode="max", **{leaf: float(value) if "." in value else int(value)})
    for fine in ("0.0", "0.01") if "min_delta" in key else ("-1", "1", "3"):
        validate_config(compose_cfg(f"{key}={fine}"))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("val_check_interval", "1.5"),  # Lightning refused it once the run existed, with a traceback
        ("val_check_interval", "0"),
        ("val_check_interval", "-1"),
        ("limit_val_batches", "1.5"),
        ("limit_train_batches", "-2"),
        ("limit_train_batches", "0"),  # a FINISHED run that trained nothing and tested its initial weights
        ("limit_train_batches", "0.0"),
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


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        # cross-entropy failed on the first batch with a label past the fifth output: "Target 7 is out of bounds"
        (["model.backbone.num_outputs=5"], r"model.backbone.num_outputs must be model.num_classes=10, one score"),
        (["model=mlp_classifier", "model.backbone.out_features=3"], r"model.backbone.out_features must be model.nu"),
        # the loss failed to fit the targets to the outputs: "shape '[32, 2]' is invalid for input of size 32"
        (
            ["experiment=diabetes_mlp", "model.backbone.out_features=2"],
            r"model.backbone.out_features must be 1: a regression predicts one value per sample",
        ),
    ],
)
def test_a_backbone_with_other_outputs_than_its_task_has_is_refused(compose_cfg, overrides, refused) -> None:
    with pytest.raises(ConfigError, match=refused):
        check_values(compose_cfg(*overrides))


@pytest.mark.parametrize("overrides", [[], ["model.num_classes=12"], ["experiment=diabetes_mlp"], ["model=lenet"]])
def test_a_backbone_whose_outputs_follow_its_task_passes(compose_cfg, overrides) -> None:
    check_values(compose_cfg(*overrides))


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


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (
            ["trainer.min_epochs=3", "trainer.max_epochs=2"],
            "trainer.min_epochs=3 is not valid: .* trainer.max_epochs=2",
        ),
        (
            ["+trainer.min_steps=50", "+trainer.max_steps=40"],
            "trainer.min_steps=50 is not valid: .* trainer.max_steps=40",
        ),
    ],
)
def test_a_least_run_length_beyond_its_most_is_refused(compose_cfg, overrides: list[str], refused: str) -> None:
    """Lightning stops at the maximum and says nothing of the minimum it could not train."""
    with pytest.raises(ConfigError, match=refused):
        check_values(compose_cfg(*overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.min_epochs=2", "trainer.max_epochs=2"],
        ["trainer.min_epochs=3", "trainer.max_epochs=-1", "scheduler=none"],  # no limit
        ["trainer.min_epochs=3", "trainer.max_epochs=null"],
        ["+trainer.min_steps=50", "+trainer.max_steps=-1"],
    ],
)
def test_a_least_run_length_within_its_most_passes(compose_cfg, overrides: list[str]) -> None:
    check_values(compose_cfg(*overrides))


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
        # with a time limit and no epoch limit Lightning trains no set number of epochs, not its default 1000
        (["scheduler=onecycle", "trainer.max_epochs=null", "+trainer.max_time=00:00:00:05"], "scheduler.total_steps"),
        (["scheduler=cosine", "trainer.max_epochs=null", "+trainer.max_time={minutes: 5}"], "scheduler.T_max"),
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
        ["scheduler=onecycle", "trainer.max_epochs=null", "+trainer.max_steps=30", "+trainer.max_time=00:00:05:00"],
        ["scheduler=cosine", "trainer.max_epochs=4", "+trainer.max_time=00:00:05:00"],
        ["scheduler=cosine", "trainer.max_epochs=-1", "scheduler.T_max=3"],
        ["scheduler=onecycle", "trainer.max_epochs=-1", "scheduler.total_steps=100"],
        ["scheduler=cosine", "trainer.max_epochs=4"],
    ],
)
def test_a_scheduler_length_the_trainer_or_the_config_gives_passes(compose_cfg, overrides) -> None:
    validate_config(compose_cfg(*overrides))


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        # torch refused each only as the fit built the optimizer or scheduler, after the run existed
        (["+optimizer.betas=[0.9,1.5]"], r"optimizer torch.optim.Adam refuses its settings \(.*optimizer.betas=\[0"),
        (["+optimizer.betaz=0.9"], r"Adam.__init__\(\) got an unexpected keyword argument 'betaz'\. Change it"),
        (["optimizer=sgd", "optimizer.nesterov=true", "optimizer.momentum=0"], r"Nesterov momentum requires a mom"),
        (["scheduler=onecycle", "+scheduler.anneal_strategy=linr"], r"anneal_strategy must be one of 'cos' or"),
        (["scheduler=plateau", "scheduler.factor=2"], r"reduce_lr_on_plateau refuses its settings .*Factor should"),
        # not refused by torch: the learning rate rose from 0.003 to 1 over the run
        (["scheduler=cosine", "scheduler.eta_min=1"], r"scheduler.eta_min must be at most optimizer.lr=0.003"),
    ],
)
def test_an_optimizer_or_scheduler_that_refuses_its_settings_is_named_before_any_run(
    compose_cfg, overrides, refused
) -> None:
    with pytest.raises(ValueError, match=refused):
        validate_config(compose_cfg(*overrides))


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop", "lazy_adam"])
@pytest.mark.parametrize("scheduler", ["none", "step", "cosine", "onecycle", "plateau"])
def test_every_optimizer_with_every_scheduler_passes(compose_cfg, optimizer, scheduler) -> None:
    validate_config(compose_cfg(f"optimizer={optimizer}", f"scheduler={scheduler}"))


@pytest.mark.parametrize(
    ("override", "refused"),
    [
        # a dense layer of no units: the model answered its bias alone, and the run finished at chance (0.10)
        ("model.backbone.hidden=[0]", r"model.backbone: ConvNet needs hidden of integers >= 1, got \[0\]"),
        # passed the check on the meta device, then failed once the run existed, as a shrunken image
        ("model.backbone.kernel_size=0", r"model.backbone: ConvNet needs kernel_size >= 1, got 0"),
        ("model.backbone.channels=[0,16]", r"ConvNet needs channels of integers >= 1, got \[0, 16\]"),
        ("model.backbone.padding=-1", r"ConvNet needs padding >= 0 \(or 'same'\), got -1"),
    ],
)
def test_a_convnet_of_no_units_or_no_kernel_is_refused_before_any_run(compose_cfg, override, refused) -> None:
    from explab.errors import UsageError

    with pytest.raises(UsageError, match=refused):
        validate_config(compose_cfg(override))


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        # (x - mean) / 0: infinite inputs, and a run failed with "training loss became nan ... lower the learning
        # rate", a cause it did not have
        (["data.std=0"], "data.std=0 is not valid: data.std must be a number > 0, or one per channel"),
        (["experiment=cifar10_cnn", "data.std=[0.2,0,0.2]"], "data.std=[0.2, 0, 0.2] is not valid"),
        (["data.mean=nan"], "data.mean=nan is not valid: data.mean must be a number, or one per channel"),
        # torch's "random_ expects 'from' to be less than 'to'" at the first augmented batch
        (["experiment=cifar10_cnn", "data.crop_padding=-1"], "data.crop_padding=-1 is not valid: data.crop_padding"),
        (["experiment=cifar10_cnn", "data.std=[0.2,0.2,0.2]", "data.mean=[0,0.5,1]", "data.crop_padding=0"], None),
        (["experiment=mnist_cnn", "data.std=1", "data.mean=-0.5"], None),
    ],
)
def test_normalisation_and_crop_settings_torch_would_fail_on_are_refused(compose_cfg, overrides, refused) -> None:
    cfg = compose_cfg(*overrides)
    if refused is None:
        check_values(cfg)
        return
    with pytest.raises(ConfigError, match=re.escape(refused)):
        check_values(cfg)


@pytest.mark.parametrize(("val_size", "valid"), [(1.5, False), (-1, False), (2.5e3, True), (5000, True), (0.1, True)])
def test_a_validation_size_is_a_fraction_below_one_or_a_whole_count(compose_cfg, val_size, valid: bool) -> None:
    """``data.val_size=1.5`` held out one sample (``int(1.5)``), a validation set whose accuracy is 0 or 1."""
    cfg = compose_cfg("experiment=mnist_cnn", f"data.val_size={val_size}")
    if valid:
        check_values(cfg)
        return
    with pytest.raises(ConfigError, match=r"data.val_size must be a fraction of the training samples from 0 to below"):
        check_values(cfg)


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        # every token of every training text blanked: the model learnt from nothing and tested at chance
        (["experiment=rotten_tomatoes_fasttext", "model.backbone.token_dropout=1.0"],
         r"model.backbone.token_dropout=1.0 is not valid: model.backbone.token_dropout must be a number from 0"),
        # every target uniform over the classes: the run finished at chance; 1.5 failed its first loss in torch
        (["+model.loss.label_smoothing=1.0"],
         r"model.loss.label_smoothing=1.0 is not valid: model.loss.label_smoothing must be a number from 0"),
        (["+model.loss.label_smoothing=1.5"], r"model.loss.label_smoothing=1.5 is not valid"),
        # torch's "input_size must be greater than zero", which named no key of explab's
        (["experiment=rotten_tomatoes_sentiment", "model.backbone.embed_dim=0"],
         r"^model.backbone: TextRNN needs depth >= 1 and embed_dim >= 1, got 1 and 0"),
    ],
)  # fmt: skip
def test_a_model_that_would_learn_from_no_token_or_no_label_is_refused_before_any_run(
    compose_cfg, overrides, refused
) -> None:
    from explab.errors import UsageError

    with pytest.raises((ConfigError, UsageError), match=refused):
        validate_config(compose_cfg(*overrides))


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        (["logger=none"], "logger=none keeps no MLflow run"),
        (["log_model=false"], "log_model=false logs no model"),
        (["log_model=true"], None),
    ],
)
def test_a_registered_name_for_a_run_that_logs_no_model_is_refused(compose_cfg, overrides, why) -> None:
    """``registered_model_name=digits`` with ``logger=none`` or ``log_model=false`` trained, logged no model and
    registered nothing, without a word."""
    from explab.errors import UsageError

    cfg = compose_cfg("registered_model_name=digits", *overrides)
    if why is None:
        validate_config(cfg)
        return
    with pytest.raises(UsageError, match=rf"^registered_model_name=digits registers the model a run logs, and {why}"):
        validate_config(cfg)


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("+trainer.foo=1", r"trainer.foo must be an argument of lightning.pytorch.Trainer, which takes no foo: remove"),
        ("+trainer.max_epoch=3", r"takes no max_epoch \(did you mean trainer.max_epochs, "),
        ("+trainer.callbacks=[]", r"trainer.callbacks must be left unset: explab gives the trainer its callbacks"),
        ("+trainer.logger=false", r"trainer.logger must be left unset: .* \(logger=mlflow or logger=none\)"),
        (
            "+trainer.strategy=dpp",
            r"trainer.strategy='dpp' is not valid: .* auto or a strategy Lightning has registered \(ddp",
        ),
    ],
)
def test_a_trainer_setting_lightning_does_not_take_is_refused_before_the_run(compose_cfg, override, said) -> None:
    """Lightning's Trainer refused an unknown keyword only as the run built it, failing the run it had created;
    a callbacks or logger setting was overridden by explab's own without a word."""
    with pytest.raises(ConfigError, match=said):
        validate_config(compose_cfg(override))


@pytest.mark.parametrize(
    "override", ["+trainer.max_steps=30", "+trainer.benchmark=true", "trainer=ddp_cpu", "+trainer.strategy=DDP_spawn"]
)
def test_the_trainer_settings_lightning_takes_pass(compose_cfg, override) -> None:
    validate_config(compose_cfg(override))


def test_an_optimizer_removed_with_its_settings_left_is_refused_with_the_group_to_choose(compose_cfg) -> None:
    """``~optimizer`` left the experiment's ``optimizer.lr``, and was refused as "optimizer None refuses its
    settings (optimizer.lr=0.003): 'DictConfig' object is not callable"."""
    with pytest.raises(
        UsageError, match=r"^optimizer names no class to build \(no optimizer._target_\), only lr: choose"
    ):
        validate_config(compose_cfg("~optimizer"))
