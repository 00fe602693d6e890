"""Config values checked against the types and ranges explab knows, before any run exists.

Hydra checks that keys exist and that values parse; it cannot know that ``optimizer.lr`` is a positive
number or ``data.batch_size`` a positive integer, and a wrong value would otherwise surface deep inside a fit,
after the run was created, without naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from omegaconf import DictConfig, OmegaConf

from explab.comparison import metric_range
from explab.errors import ConfigError, UsageError, first_line
from explab.models.init import SCHEMES as INIT_SCHEMES
from explab.models.schedules import configured_schedule
from explab.monitor_mode import AUTO, MODES, after_validation, followers, mode_by_name
from explab.precision import MATMUL_PRECISIONS
from explab.targets import check_targets

MAX_SEED = 2**32 - 1  # numpy's seeds; Lightning seeds numpy with it


@dataclass(frozen=True)
class Rule:
    """What a key takes: ``kind`` "bool", "int", "float" (ints accepted), "str" or "any", a range or membership
    check, and whether null is valid."""

    kind: str
    allowed: str
    in_range: Callable[[Any], bool] = lambda value: True
    nullable: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)  # "maybe" or 1 would pass a truth test and silently mean true
        if isinstance(value, bool):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        if self.kind == "str" and not isinstance(value, str):
            return False
        if self.kind == "float" and (not isinstance(value, int | float) or not math.isfinite(value)):
            return False
        return self.in_range(value)  # kind "any": the range check alone decides


def _positive_int(allowed: str = "an integer >= 1", nullable: bool = False) -> Rule:
    return Rule("int", allowed, lambda v: v >= 1, nullable)


def _fraction(allowed: str = "a number from 0 up to (not including) 1") -> Rule:
    return Rule("float", allowed, lambda v: 0 <= v < 1)


def _per_channel(above_zero: bool) -> Callable[[Any], bool]:
    """A normalisation statistic: one number for every channel, or one per channel (CIFAR's three)."""

    def accepts(value: Any) -> bool:
        values = list(value) if isinstance(value, list | tuple) or OmegaConf.is_list(value) else [value]
        return bool(values) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not above_zero)
            for v in values
        )

    return accepts


def _devices(value: Any) -> bool:
    """Lightning's ``devices``: a count >= 1, -1 or "auto" (all there are), or device indices (``[0, 2]``,
    ``"0,2"``); 0 devices is no device at all."""
    if isinstance(value, str):
        text = value.strip()
        if text in ("auto", "-1"):
            return True
        if "," in text:
            indices = [part.strip() for part in text.split(",") if part.strip()]
            return bool(indices) and all(index.isdigit() for index in indices)
        return text.isdigit() and int(text) >= 1
    if isinstance(value, int):
        return value == -1 or value >= 1
    if isinstance(value, list | tuple) or OmegaConf.is_list(value):
        return len(value) > 0 and all(type(index) is int and index >= 0 for index in value)
    return False


def duration_seconds(value: Any) -> float | None:
    """Lightning's ``trainer.max_time`` in seconds: ``DD:HH:MM:SS`` (``00:12:00:00``) or a mapping of
    ``datetime.timedelta``'s arguments (``{hours: 12}``); None for anything Lightning would refuse."""
    try:
        if isinstance(value, str):
            days, hours, minutes, seconds = (int(part) for part in value.split(":"))
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
        if isinstance(value, Mapping):
            return timedelta(**{str(k): v for k, v in value.items()}).total_seconds()
    except (TypeError, ValueError):
        return None
    return None


def _fraction_or_count(above_zero: bool) -> Callable[[Any], bool]:
    """Lightning's batch amounts: a float is a fraction of an epoch's batches, an int a number of batches."""

    def accepts(value: Any) -> bool:
        if isinstance(value, int):
            return value >= (1 if above_zero else 0)
        return (0 < value <= 1) if above_zero else (0 <= value <= 1)

    return accepts


# What Lightning's ``precision`` takes (``lightning.fabric.connector._convert_precision_to_unified_args``), written
# out so that a mistyped precision is answered before torch and Lightning are imported; a test holds it equal to
# Lightning's own list, which changes only with the locked version
LIGHTNING_PRECISIONS = (
    *("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true", "bf16-mixed"),
    *("32-true", "64-true", 64, 32, 16, "64", "32", "16", "bf16"),
)

_MODE_RULE = Rule("str", "min, max or auto (what the followed metric's name says is better)", lambda v: v in MODES)

RULES: dict[str, Rule] = {
    "seed": Rule("int", f"an integer from 0 to {MAX_SEED}", lambda v: 0 <= v <= MAX_SEED),
    "experiment_name": Rule(
        "str", "a non-empty name (quote one made of digits: experiment_name='2024')", lambda v: bool(v.strip())
    ),
    "torch_threads": _positive_int("null or an integer >= 1", nullable=True),
    "monitor_mode": _MODE_RULE,
    "matmul_precision": Rule("str", f"one of {', '.join(MATMUL_PRECISIONS)}", lambda v: v in MATMUL_PRECISIONS),
    **{key: Rule("bool", "true or false") for key in ("test", "log_model", "log_plots")},
    "system_metrics_seconds": Rule("float", "null (off) or a number of seconds > 0", lambda v: v > 0, True),
    "logger.mlflow.flush_seconds": Rule("float", "a number of seconds >= 0", lambda v: v >= 0),
    "optimizer.lr": Rule("float", "a number > 0", lambda v: v > 0),
    "optimizer.weight_decay": Rule("float", "a number >= 0", lambda v: v >= 0),
    "optimizer.momentum": _fraction(),
    "trainer.max_epochs": Rule("int", "null, -1 (no limit) or an integer >= 1", lambda v: v == -1 or v >= 1, True),
    "trainer.min_epochs": Rule("int", "null or an integer >= 0", lambda v: v >= 0, True),
    "trainer.max_steps": Rule("int", "-1 (no limit) or an integer >= 1", lambda v: v == -1 or v >= 1),
    "trainer.accumulate_grad_batches": _positive_int(),
    # ``auto``: explab's own (``explab.precision``), what the hardware computes natively
    "trainer.precision": Rule(
        "any",
        "auto, 32-true, bf16-mixed, 16-mixed (GPUs), bf16-true, 16-true or 64-true",
        lambda v: v == "auto" or v in LIGHTNING_PRECISIONS,
        True,
    ),
    "trainer.devices": Rule(
        "any", 'an integer >= 1, -1 or "auto" (every device there is), or device indices such as [0,1]', _devices
    ),
    "trainer.num_nodes": _positive_int(),
    "trainer.gradient_clip_val": Rule("float", "null or a number >= 0", lambda v: v >= 0, True),
    "trainer.check_val_every_n_epoch": _positive_int("null or an integer >= 1", nullable=True),
    "trainer.gradient_clip_algorithm": Rule("str", "norm or value", lambda v: v in ("norm", "value"), True),
    # YAML's 1 is an int (validate every batch) and 1.0 a float (once an epoch), as Lightning reads them
    "trainer.val_check_interval": Rule(
        "float",
        "null, a fraction of an epoch above 0 up to 1.0 (0.25: four times an epoch), or a number of training "
        "batches >= 1",
        _fraction_or_count(above_zero=True),
        True,
    ),
    # 0 turns validation or testing off; 0 training batches would record a FINISHED run of an untrained model
    "trainer.limit_train_batches": Rule(
        "float",
        "null, a fraction of the batches above 0 up to 1.0, or a number of batches >= 1 (0 trains nothing, and "
        "the run would test and record its untrained model; to test a checkpoint, use explab-eval)",
        _fraction_or_count(above_zero=True),
        True,
    ),
    **{
        f"trainer.limit_{split}_batches": Rule(
            "float",
            "null, a fraction of the batches from 0 to 1.0, or a number of batches >= 0",
            _fraction_or_count(above_zero=False),
            True,
        )
        for split in ("val", "test", "predict")
    },
    "trainer.max_time": Rule(
        "any",
        "null, a duration DD:HH:MM:SS above zero (00:12:00:00: twelve hours) or a mapping such as {hours: 12}",
        lambda v: (duration_seconds(v) or 0) > 0,
        True,
    ),
    "trainer.log_every_n_steps": _positive_int(),
    "trainer.num_sanity_val_steps": Rule("int", "-1 (all batches) or an integer >= 0", lambda v: v >= -1),
    "data.batch_size": _positive_int(),
    "data.eval_batch_size": _positive_int("null or an integer >= 1", nullable=True),
    "data.val_fraction": _fraction(),
    "data.test_fraction": Rule("float", "a number between 0 and 1", lambda v: 0 < v < 1),
    # below 1 a fraction, from 1 a count: 1.5 held out one sample, read as int(1.5)
    "data.val_size": Rule(
        "float",
        "a fraction of the training samples from 0 to below 1 (0.1), or a whole count of them (5000)",
        lambda v: v >= 0 and (v < 1 or float(v).is_integer()),
    ),
    # text: two entries of the vocabulary are padding and unknown words, so 3 is the smallest that holds a word
    "data.vocab_size": Rule("int", "an integer >= 3 (two entries are padding and unknown words)", lambda v: v >= 3),
    # inputs are (x - mean) / std: a std of 0 makes them infinite, and the first loss NaN
    "data.std": Rule("any", "a number > 0, or one per channel", _per_channel(above_zero=True)),
    "data.mean": Rule("any", "a number, or one per channel", _per_channel(above_zero=False)),
    "data.crop_padding": Rule("int", "an integer >= 0 (pixels of padding before a random crop)", lambda v: v >= 0),
    "data.min_freq": _positive_int(),
    "data.max_len": _positive_int(),
    "model.num_classes": Rule("int", "an integer >= 2", lambda v: v >= 2),
    "model.init": Rule("str", f"one of {', '.join(INIT_SCHEMES)}", lambda v: v in INIT_SCHEMES),
    "model.backbone.depth": Rule("int", "an integer >= 0", lambda v: v >= 0),
    "model.backbone.width": _positive_int(),
    "model.backbone.dropout": _fraction(),
    # 1 blanks every token of every training text: the model learns from none and tests at chance
    "model.backbone.token_dropout": _fraction(),
    # 1 makes every target uniform over the classes: nothing is learnt (above 1 torch fails the first loss)
    "model.loss.label_smoothing": _fraction(),
    "scheduler.T_max": _positive_int("null (the run's max_epochs) or an integer >= 1", nullable=True),
    "scheduler.step_size": _positive_int(),
    "scheduler.gamma": Rule("float", "a number > 0", lambda v: v > 0),
    "scheduler.total_steps": _positive_int("null (filled in from the trainer) or an integer >= 1", nullable=True),
    "scheduler.pct_start": Rule("float", "a number between 0 and 1", lambda v: 0 < v < 1),
    "callbacks.early_stopping.patience": Rule("int", "an integer >= 0", lambda v: v >= 0),
    "callbacks.early_stopping.mode": _MODE_RULE,
    # Lightning turns min_delta's sign by the mode: a negative one counts a worse value as an improvement, and the
    # run never stops early
    "callbacks.early_stopping.min_delta": Rule(
        "float", "a number >= 0 (the least change that counts as an improvement)", lambda v: v >= 0
    ),
    # 0 keeps no best checkpoint: the run would test, log and hand explab-eval its last epoch as if it were the best
    "callbacks.model_checkpoint.save_top_k": Rule(
        "int",
        "-1 (every epoch's) or an integer >= 1 (the best k); to keep no checkpoint, give checkpoint=none",
        lambda v: v == -1 or v >= 1,
    ),
    "callbacks.model_checkpoint.mode": _MODE_RULE,
    "scheduler.patience": Rule("int", "an integer >= 0", lambda v: v >= 0),
    "callbacks.last_checkpoint.min_interval_seconds": Rule("float", "a number of seconds >= 0", lambda v: v >= 0),
}

_ABSENT = object()


def validate_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first value explab can tell is wrong before a run exists: the values
    ``check_values`` reads from the config alone, then that each ``_target_`` can be imported, then the metrics
    callbacks follow and which way each is better, ``time_to`` and sparse gradients, which ask Lightning and the
    task, and last the settings the trainer, the optimizer and the scheduler are built with.
    """
    check_values(cfg)
    check_targets(cfg)
    check_monitors(cfg)
    check_monitor_modes(cfg)
    check_time_to(cfg)
    check_registration(cfg)
    check_sparse_gradients(cfg)
    check_trainer_settings(cfg)
    check_optimizer_and_scheduler(cfg)


# what build_trainer gives the trainer itself, from the config's own groups: a trainer.* setting of these
# would be overridden without a word
TRAINER_ARGUMENTS_EXPLAB_GIVES = {
    "callbacks": "from the callbacks group (callbacks=..., +callbacks.NAME._target_=...)",
    "logger": "from the logger group (logger=mlflow or logger=none)",
    "plugins": "(its atomic checkpoint writer, and SLURM's environment in a SLURM job)",
}


def _check_strategy_name(strategy: Any) -> None:
    """A strategy named by a string is one Lightning has registered (``ddp``, ``fsdp``, ...): another failed the
    run as Lightning built the trainer ("You selected an invalid strategy name")."""
    import difflib

    if not isinstance(strategy, str) or strategy.lower() == "auto":
        return
    from lightning.pytorch.strategies import StrategyRegistry

    known = StrategyRegistry.available_strategies()
    if strategy.lower() in known:
        return
    close = difflib.get_close_matches(strategy.lower(), known, n=3)
    raise ConfigError(
        "trainer.strategy",
        strategy,
        f"auto or a strategy Lightning has registered ({', '.join(close or ['ddp', 'ddp_spawn', 'fsdp', 'deepspeed'])}"
        ", ...), or a strategy's config with its _target_",
    )


def check_trainer_settings(cfg: DictConfig) -> None:
    """Each ``trainer.*`` setting is an argument of the trainer class: ``+trainer.foo=1`` failed the run it had
    created, with Hydra's "Trainer.__init__() got an unexpected keyword argument 'foo'"; and the arguments
    explab gives the trainer itself are refused with where they are set."""
    import difflib
    import inspect

    from hydra.utils import get_class

    node = cfg.get("trainer")
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not target:
        return
    _check_strategy_name(node.get("strategy"))
    parameters = inspect.signature(get_class(str(target))).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    for name in (str(k) for k in node if not str(k).startswith("_")):
        if name in TRAINER_ARGUMENTS_EXPLAB_GIVES:
            raise ConfigError(
                f"trainer.{name}",
                node.get(name),
                f"left unset: explab gives the trainer its {name} itself {TRAINER_ARGUMENTS_EXPLAB_GIVES[name]}",
            )
        if name not in parameters:
            close = difflib.get_close_matches(name, list(parameters), n=3)
            near = f" (did you mean {', '.join(f'trainer.{c}' for c in close)}?)" if close else ""
            raise ConfigError(
                f"trainer.{name}",
                node.get(name),
                f"an argument of {target}, which takes no {name}{near}: remove it, or give one it takes",
            )


def check_values(cfg: DictConfig) -> None:
    """The checks that need nothing but the config, and so no torch: ``UsageError`` naming the mandatory
    values still missing (``???``), then ``ConfigError`` for a known key's type or range, the held-out
    fractions and the length a scheduler is fitted to. Keys the config does not have are left alone.
    """
    missing = missing_values(cfg)
    if missing:
        raise UsageError(
            f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no value (???): give "
            f"{missing[0]}=... on the command line, or set it in the experiment's YAML"
        )
    for key, rule in RULES.items():
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig) or leaf not in node or OmegaConf.is_missing(node, leaf):
            continue
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not rule.accepts(value):
            raise ConfigError(key, value, rule.allowed)
    check_held_out_fractions(cfg)
    check_model_outputs(cfg)
    check_run_length_bounds(cfg)
    check_scheduler_length(cfg)
    check_validation_across_epochs(cfg)


def missing_values(cfg: DictConfig) -> list[str]:
    """The keys whose value is still ``???``, outside Hydra's own node.

    Read without resolving interpolations: in a sweep's process Hydra's node holds values that exist only
    once a job runs (``hydra.job.num``), which OmegaConf's ``missing_keys`` would try to resolve.
    """
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]")
        elif node == "???":
            found.append(path)

    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    walk({key: value for key, value in plain.items() if key != "hydra"}, "")
    return found


def check_monitors(cfg: DictConfig) -> None:
    """The metric each callback and the scheduler follow (``monitor``, or one of their own) is one the task logs,
    or a timing (``perf/``) or learning rate (``lr-``): Lightning finds out after the first validation epoch. A
    scheduler cannot follow a validation metric in a fit that does not validate (the callbacks that would
    are left out of it)."""
    from explab.build import task_class, task_metric_names, validates

    followed = {f"{key}.monitor": str(node.monitor) for key, node in followers(cfg).items()}
    scheduled = followed.get("scheduler.monitor", "")
    if after_validation(scheduled) and not validates(cfg):
        raise ConfigError(
            "scheduler.monitor",
            scheduled,
            "a metric the fit logs, and this run does not validate (no validation split, or "
            "trainer.limit_val_batches=0): follow a training metric (scheduler.monitor=train/loss), or choose "
            "another scheduler",
        )
    if not followed or task_class(cfg) is None:
        return
    logged = {name for name in task_metric_names(cfg) if not name.startswith("test/")}  # test/ comes after fit
    for key, metric in followed.items():
        if metric not in logged and not metric.startswith(("perf/", "lr-")):
            # most callbacks follow the root's ``monitor``; that is the key to change then
            key = "monitor" if metric == str(cfg.get("monitor")) else key
            raise ConfigError(key, metric, f"a metric this task logs: one of {', '.join(sorted(logged))}")


def check_monitor_modes(cfg: DictConfig) -> None:
    """Each callback or scheduler that follows a metric takes the mode its name says is better: ``auto`` needs
    a name that says which way (``lr-Adam`` does not), and a mode against the name (max of ``val/loss``) would
    keep the worst checkpoint, test it as the run's best, stop early and cut the learning rate while the
    metric still improves."""
    for follower, node in followers(cfg).items():
        if node.get("mode") is None:
            continue
        metric, mode = str(node.monitor), node.mode
        # most follow the root's monitor in the root's mode; that is the key to change then
        key = "monitor_mode" if (metric, mode) == (cfg.get("monitor"), cfg.get("monitor_mode")) else f"{follower}.mode"
        if mode not in MODES:  # a scheduler's mode (a callback's is a rule of check_values)
            raise ConfigError(key, mode, _MODE_RULE.allowed)
        better = mode_by_name(metric)
        if mode == AUTO and better is None:
            raise ConfigError(key, mode, f"min or max for {metric}, whose name does not say which way is better")
        if mode != AUTO and better is not None and mode != better:
            lower = "lower" if better == "min" else "higher"
            raise ConfigError(
                key,
                mode,
                f"{better} (or auto) for {metric}, whose name says {lower} is better: {mode} would take its worst "
                "value for its best",
            )


def check_sparse_gradients(cfg: DictConfig) -> None:
    """A backbone with sparse embedding gradients needs an optimiser that takes them (torch's Adam does not,
    and would fail at the first step, after the run exists)."""
    if not OmegaConf.select(cfg, "model.backbone.sparse", default=False):
        return
    import torch
    from hydra.utils import get_class

    from explab.models.lazy_adam import LazyAdam

    # optimisers that take the sparse gradients of ``nn.Embedding(..., sparse=True)``, under any import path
    takes_sparse = (LazyAdam, torch.optim.SparseAdam, torch.optim.SGD, torch.optim.Adagrad)
    target = str(OmegaConf.select(cfg, "optimizer._target_", default=""))
    if not issubclass(get_class(target), takes_sparse):
        raise ConfigError(
            "optimizer",
            target,
            "an optimiser that takes the sparse gradients of model.backbone.sparse=true: optimizer=lazy_adam "
            "(or torch.optim.SparseAdam, SGD, Adagrad); or set model.backbone.sparse=false",
        )


def check_optimizer_and_scheduler(cfg: DictConfig) -> None:
    """The optimizer and the scheduler take their settings: each is built once, as the task module builds them
    in the fit, for one stand-in parameter. torch refused a setting only there, after the run existed and with a
    traceback: ``+optimizer.betas=[0.9,1.5]`` ("Invalid beta parameter at index 1: 1.5"), a keyword the class
    does not take, a one-cycle's ``anneal_strategy=linr``. A cosine that would anneal the learning rate up, to
    an ``eta_min`` above it, is refused as well."""
    import torch
    from hydra.utils import instantiate

    from explab.models.tasks import factory_fills

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)  # what a scheduler steps without an optimizer of the config's
    for key in ("optimizer", "scheduler"):
        node = cfg.get(key)
        if not isinstance(node, DictConfig):
            continue
        if "_target_" not in node:  # ~optimizer, with an experiment's optimizer.lr left behind
            raise UsageError(
                f"{key} names no class to build (no {key}._target_), only {', '.join(map(str, node))}: choose "
                f"one with {key}=... (explab-train --help lists the options)"
            )
        try:
            made = instantiate(node)
            if key == "optimizer":
                optimizer = made(params=[parameter])
            elif callable(made):  # a length the trainer fills in is any length here
                made(optimizer, **{name: 10 for name in factory_fills(made)})
        except (TypeError, ValueError) as error:
            settings = {str(name): value for name, value in node.items()}
            given = ", ".join(f"{key}.{name}={value}" for name, value in settings.items() if name[0] != "_")
            raise UsageError(
                f"{key} {node.get('_target_')} refuses its settings ({given}): {first_line(error)}. Change it on "
                "the command line or in the experiment's YAML"
            ) from None
    _check_eps_in_half_precision(cfg, optimizer)
    eta_min, lr = OmegaConf.select(cfg, "scheduler.eta_min"), OmegaConf.select(cfg, "optimizer.lr")
    if isinstance(eta_min, (int, float)) and isinstance(lr, (int, float)) and eta_min > lr:
        raise ConfigError(
            "scheduler.eta_min",
            eta_min,
            f"at most optimizer.lr={lr}: a cosine anneals the learning rate from optimizer.lr down to eta_min, "
            f"and this one would raise it to {eta_min}",
        )


def _check_eps_in_half_precision(cfg: DictConfig, optimizer: Any) -> None:
    """``trainer.precision=16-true`` keeps the weights, and so the optimizer's state, in float16, where Adam's
    and RMSprop's eps of 1e-8 is 0: the update divides by the root of a second moment that float16 rounds to
    0 for any small gradient, and the loss became NaN within the first epoch, blamed on the learning rate."""
    import torch

    eps = optimizer.defaults.get("eps")
    if str(OmegaConf.select(cfg, "trainer.precision", default="")) != "16-true" or not isinstance(eps, float):
        return
    if float(torch.tensor(eps, dtype=torch.float16)) != 0:
        return
    given = "optimizer.eps" if "eps" in cfg.optimizer else "+optimizer.eps"
    raise UsageError(
        f"trainer.precision=16-true keeps the weights and the optimizer's state in float16, where its eps={eps:g} "
        "is 0: the update would divide by second moments that float16 rounds to 0, and the loss would become "
        f"NaN. Train in precision=16-mixed or precision=bf16-mixed (float32 weights), or give {given}=1e-4"
    )


def check_registration(cfg: DictConfig) -> None:
    """``registered_model_name`` registers the model a run logs: a run that logs none (``log_model=false``, or
    ``logger=none``, which keeps no MLflow run) would register nothing, and say nothing of it."""
    from explab.tracking.logger_node import mlflow_logger_node

    name = cfg.get("registered_model_name")
    if not name:
        return
    why = "logger=none keeps no MLflow run" if mlflow_logger_node(cfg) is None else None
    if why is None and not cfg.get("log_model"):
        why = "log_model=false logs no model"
    if why:
        raise UsageError(
            f"registered_model_name={name} registers the model a run logs, and {why}: give log_model=true with "
            "logger=mlflow (the default), or leave registered_model_name out"
        )


def check_time_to(cfg: DictConfig) -> None:
    """``time_to`` maps metrics the task logs to lists of numbers; the model is built only when it is set."""
    thresholds = cfg.get("time_to")
    if not thresholds:
        return
    allowed = "a mapping of metric names to lists of thresholds, e.g. {val/acc: [0.95, 0.99]}"
    if not isinstance(thresholds, DictConfig):
        raise ConfigError("time_to", thresholds, allowed)
    from explab.build import task_metric_names

    logged = task_metric_names(cfg)
    for key, values in thresholds.items():
        metric = str(key)
        if metric not in logged:
            raise ConfigError(f"time_to.{metric}", values, f"a metric this task logs: one of {sorted(logged)}")
        numbers = list(values) if OmegaConf.is_list(values) else [values]
        if not numbers or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            raise ConfigError(f"time_to.{metric}", values, "a list of numbers, e.g. [0.95, 0.99]")
        low, high = metric_range(metric)
        beyond = [v for v in numbers if not low <= v <= high]
        if beyond:
            # a threshold no value reaches would log nothing, and the run would not say why
            raise ConfigError(
                f"time_to.{metric}", values, f"thresholds {metric} can reach ({low:g} to {high:g}), not {beyond}"
            )


OUTPUT_KEYS = ("num_outputs", "out_features")  # what explab's backbones name their number of outputs


def check_held_out_fractions(cfg: DictConfig) -> None:
    """``data.val_fraction`` and ``data.test_fraction`` together hold out less than all the data, or nothing
    would be left to train on (the data module refuses it too, but only once it is built)."""
    val = OmegaConf.select(cfg, "data.val_fraction", default=None)
    test = OmegaConf.select(cfg, "data.test_fraction", default=None)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (val, test))
    if numbers and val + test >= 1:
        raise ConfigError(
            "data.test_fraction",
            test,
            f"below {1 - val:g} beside data.val_fraction={val:g}, so that some data is left to train on",
        )


def check_model_outputs(cfg: DictConfig) -> None:
    """The backbone's outputs (``model.backbone.num_outputs``, or an MLP's ``out_features``): one score per class
    of a classification (``model.num_classes``), one value of a regression. The recipes tie them by
    interpolation; one given alone failed on the first batch inside torch ("IndexError: Target 7 is out of
    bounds", "shape '[32, 2]' is invalid for input of size 32")."""
    task = str(OmegaConf.select(cfg, "model._target_", default="") or "").rpartition(".")[2]
    found = [(leaf, OmegaConf.select(cfg, f"model.backbone.{leaf}", default=None)) for leaf in OUTPUT_KEYS]
    given = [(leaf, outputs) for leaf, outputs in found if type(outputs) is int]
    if not given:
        return
    leaf, outputs = given[0]
    classes = OmegaConf.select(cfg, "model.num_classes", default=None)
    if task == "RegressionTask" and outputs != 1:
        raise ConfigError(f"model.backbone.{leaf}", outputs, "1: a regression predicts one value per sample")
    if task == "ClassificationTask" and type(classes) is int and outputs != classes:
        raise ConfigError(
            f"model.backbone.{leaf}", outputs, f"model.num_classes={classes}, one score per class (or change both)"
        )


def check_run_length_bounds(cfg: DictConfig) -> None:
    """``trainer.min_epochs`` at most ``trainer.max_epochs``, and ``min_steps`` at most ``max_steps``: Lightning
    takes both and stops at the maximum, so a run asked for at least 3 epochs of at most 2 trained 2, unsaid."""
    for unit in ("epochs", "steps"):
        least = OmegaConf.select(cfg, f"trainer.min_{unit}", default=None)
        most = OmegaConf.select(cfg, f"trainer.max_{unit}", default=None)
        if type(least) is int and type(most) is int and 1 <= most < least:
            raise ConfigError(
                f"trainer.min_{unit}",
                least,
                f"at most trainer.max_{unit}={most}, where the run stops: lower trainer.min_{unit}, or raise "
                f"trainer.max_{unit}",
            )


def check_validation_across_epochs(cfg: DictConfig) -> None:
    """``trainer.check_val_every_n_epoch=null`` counts the training batches between validations across epochs.
    Its ``val_check_interval`` is then a number of batches: Lightning refuses a fraction once the run exists. A
    scheduler following a ``val/`` metric still steps at each epoch's end, out of step with validations every N
    batches: an epoch that ends before the first one fails the fit, and a later one steps on a value seen before.
    Without an interval it validates once an epoch, as with 1.
    """
    if OmegaConf.select(cfg, "trainer.check_val_every_n_epoch", default=1) is not None:
        return
    interval = OmegaConf.select(cfg, "trainer.val_check_interval", default=None)
    if isinstance(interval, float):
        raise ConfigError(
            "trainer.val_check_interval",
            interval,
            "a number of training batches (an integer) with trainer.check_val_every_n_epoch=null, which counts "
            "them across epochs; to validate at a fraction of each epoch, set trainer.check_val_every_n_epoch=1",
        )
    scheduler = followers(cfg).get("scheduler")
    if isinstance(interval, int) and scheduler is not None and after_validation(scheduler.monitor):
        raise ConfigError(
            "trainer.check_val_every_n_epoch",
            None,
            f"an integer >= 1 with a scheduler that follows {scheduler.monitor}: the scheduler steps at each "
            "epoch's end, and null validates every val_check_interval batches across epochs, so it would step on "
            "a value it has seen, or on none. Validate within epochs (trainer.check_val_every_n_epoch=1, and "
            "+trainer.val_check_interval at most an epoch's batches), or follow a training metric "
            "(scheduler.monitor=train/loss)",
        )


def check_scheduler_length(cfg: DictConfig) -> None:
    """A scheduler whose length explab fills in needs a run whose length the trainer bounds: OneCycleLR's
    ``total_steps`` needs ``trainer.max_epochs`` or ``trainer.max_steps``, CosineAnnealingLR's ``T_max`` (in
    epochs) needs ``trainer.max_epochs``. Otherwise OneCycleLR fails in the first step and the cosine, given
    one epoch, would rise again after it.
    """
    _, filled = configured_schedule(cfg)
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    max_steps = OmegaConf.select(cfg, "trainer.max_steps", default=-1)
    steps_bounded = type(max_steps) is int and max_steps >= 1
    timed = OmegaConf.select(cfg, "trainer.max_time", default=None) is not None
    # Lightning trains 1000 epochs when no limit is given, and with no epoch limit when only max_steps or
    # max_time is (a time limit is no length to plan a schedule over)
    epochs_bounded = (type(max_epochs) is int and max_epochs >= 1) or (
        max_epochs is None and not steps_bounded and not timed
    )
    epochs = "null" if max_epochs is None else max_epochs
    if "total_steps" in filled and not (epochs_bounded or steps_bounded):
        limited = "; trainer.max_time stops it at no set step" if timed else ""
        raise ConfigError(
            "scheduler.total_steps",
            None,
            f"an integer >= 1 in a run of unbounded length (trainer.max_epochs={epochs} and no "
            f"trainer.max_steps{limited}): give it, or bound the run with trainer.max_epochs or +trainer.max_steps",
        )
    if "T_max" in filled and not epochs_bounded:
        raise ConfigError(
            "scheduler.T_max",
            None,
            f"a number of epochs in a run whose epochs are not bounded (trainer.max_epochs={epochs}): "
            "give it, or set trainer.max_epochs",
        )
