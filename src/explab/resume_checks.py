"""What ``resume=RUN_ID`` must find before it reopens a run: a readable checkpoint of that very run, the same
model and data, MLflow on, and something left to train. Each refusal leaves the run exactly as it was. And
what a checkpoint must hold before ``ckpt_path=`` fits on from it into a new run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from omegaconf import DictConfig, OmegaConf

from explab.errors import UsageError, counted
from explab.models.schedules import configured_schedule
from explab.tracking.logger_node import mlflow_logger_node
from explab.tracking.params import flatten_params
from explab.validation import duration_seconds

if TYPE_CHECKING:
    from mlflow.entities import Run

# model settings a resume may change: they do not change what the checkpoint's weights mean
MODEL_KEYS_A_RESUME_MAY_CHANGE = ("model.channels_last", "model.compile", "model.init")
# what picks a run's best checkpoint: the one its test, explab-eval and the logged model take
BEST_CHECKPOINT_KEYS = ("callbacks.model_checkpoint.monitor", "callbacks.model_checkpoint.mode")
# what a one-cycle schedule fitted to the run (scheduler.total_steps left null) takes its length from: the
# number of ranks too, as Lightning counts the steps of an epoch in one rank's share of the batches
SCHEDULE_LENGTH_KEYS = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.accumulate_grad_batches",
    "trainer.limit_train_batches",
    "data.batch_size",
    "trainer.devices",
    "trainer.num_nodes",
)


def trained_without_checkpoints(run: Run) -> bool:
    """Whether ``run`` trained with ``checkpoint=none``, which keeps neither a best nor a last checkpoint."""
    return run.data.params.get("trainer.enable_checkpointing") == "False"


def last_checkpoint_in(output_dir: str | Path) -> Path:
    """Where a run with output folder ``output_dir`` keeps its ``last.ckpt`` (conf/checkpoint: its checkpoints/)."""
    return Path(output_dir) / "checkpoints" / "last.ckpt"


def last_checkpoint_of(run: Run) -> Path:
    """Where ``run``'s ``last.ckpt`` is, in the output folder it recorded (which may be gone)."""
    return last_checkpoint_in(run.data.params.get("paths.output_dir") or "")


def run_folder_here(run: Run, log_dir: str | Path) -> Path:
    """``run``'s output folder on this machine: the one it recorded, or else the same folder under this
    command's ``paths.log_dir`` where that holds its ``last.ckpt`` (a renamed project, or a cluster that
    mounts the project elsewhere: the folder sits where it sat under the ``paths.log_dir`` the run recorded).
    The recorded folder when neither holds one."""
    recorded = Path(run.data.params.get("paths.output_dir") or "")
    then = run.data.params.get("paths.log_dir")
    if last_checkpoint_in(recorded).is_file() or not then or not recorded.is_relative_to(then):
        return recorded
    here = Path(log_dir) / recorded.relative_to(then)
    return here if last_checkpoint_in(here).is_file() else recorded


def check_resumable(run: Run, config: DictConfig, checkpoint_path: Path) -> None:
    """Raise ``UsageError`` (or ``CheckpointError``) when resuming ``run`` with ``config`` would damage it."""
    run_id = run.info.run_id
    if mlflow_logger_node(config) is None:
        raise UsageError(
            f"resume={run_id} continues an MLflow run, but logger=none would train into its folder without "
            f"recording the epochs. Resume with the MLflow logger on, or train a copy elsewhere with "
            f"ckpt_path={checkpoint_path} hydra.run.dir=<a new folder> logger=none"
        )
    if not checkpoint_path.is_file():
        if trained_without_checkpoints(run):
            raise UsageError(
                f"run {run_id} trained with checkpoint=none, which keeps no last checkpoint to resume from; "
                f"train it again from scratch with one: reproduce={run_id} checkpoint=default"
            )
        raise UsageError(
            f"run {run_id} has no last checkpoint at {checkpoint_path}: it cannot be resumed here "
            f"(use reproduce={run_id} to train it again from scratch)"
        )
    # torch here, not above: a run id that names no run is answered before torch is imported
    from explab.checkpoints import load_checkpoint, recorded_config

    checkpoint = load_checkpoint(checkpoint_path)  # refuses a truncated or tampered file, by name
    record = recorded_config(checkpoint, checkpoint_path)
    if record.get("mlflow_run_id") != run_id:
        raise UsageError(
            f"{checkpoint_path} belongs to MLflow run {record.get('mlflow_run_id')}, not to run {run_id}: the two "
            "runs shared an output folder. Resume that run instead, or train this one again with "
            f"reproduce={run_id}"
        )
    then = flatten_params(record["config"])
    now = flatten_params(cast(dict[str, Any], OmegaConf.to_container(config, resolve=True)))
    _check_same_model(run_id, then, now)
    _check_same_optimizer(run_id, then, now)
    _check_same_best_checkpoint_rule(run_id, then, now)
    _check_schedule_length(run_id, then, now, config)
    _check_limits_reach_the_checkpoint(
        f"resume={run_id}: the run has",
        checkpoint,
        config,
        "leave it out to keep the run's own",
        then,
    )
    if run.info.status == "FINISHED":
        _check_something_left_to_train(run_id, checkpoint, config)


def check_fit_from_checkpoint(cfg: DictConfig, path: Path) -> None:
    """Raise ``UsageError`` (or ``CheckpointError``) unless the checkpoint at ``path`` fits what ``cfg`` builds, so
    that ``ckpt_path=`` can fit on from it into a new run: weights of the model's keys and shapes, and (when
    explab wrote it) the optimizer and schedule whose state it holds, a one-cycle at the length it was
    fitted to. Lightning restores all of them as they were saved."""
    from explab.build import meta_model
    from explab.checkpoints import CHECKPOINT_KEY, load_checkpoint, weights_mismatch

    checkpoint = load_checkpoint(path)
    _check_limits_reach_the_checkpoint(
        f"ckpt_path={path}: fitting on from it continues its epoch and step counts, and it has",
        checkpoint,
        cfg,
        "train from the start without ckpt_path",
    )
    model = meta_model(cfg)  # None: a model that needs real tensors to be built, which Lightning checks as it loads
    mismatch = weights_mismatch(model, checkpoint["state_dict"]) if model is not None else ""
    if mismatch:
        raise UsageError(
            f"ckpt_path={path}: its weights do not fit the model this config builds ({mismatch}). Give a "
            "checkpoint of this model, or the model settings the checkpoint was trained with"
        )
    record = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return  # not written by explab-train: what it was trained with is not known here
    then = flatten_params(record["config"])
    now = flatten_params(cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)))
    changes = restored_state_changes(then, now)
    if changes:
        raise UsageError(
            f"ckpt_path={path} holds the optimizer and schedule state of the run that wrote it, and this config "
            f"changes them ({changes}): Lightning restores that state as it was saved. Fit on with the "
            "checkpoint's optimizer and scheduler, or train the new ones from the start without ckpt_path"
        )
    schedule, changes = one_cycle_length_changes(then, now, cfg)
    if changes:
        raise UsageError(
            f"ckpt_path={path}: its learning-rate schedule ({schedule}) was fitted to the steps of the run that "
            f"wrote it, and the checkpoint holds it with that length: fitting on with {changes} would fail once "
            "it passes that end. Fit on with the checkpoint's length, or train the new length from the start "
            "without ckpt_path"
        )


def _check_same_model(run_id: str, then_params: dict[str, Any], now_params: dict[str, Any]) -> None:
    keys = sorted(
        key
        for key in {*then_params, *now_params}
        if (key.startswith("model.") or key == "data._target_")
        and key not in MODEL_KEYS_A_RESUME_MAY_CHANGE
        and then_params.get(key) != now_params.get(key)
    )
    if keys:
        changes = "; ".join(
            f"{k}: {then_params.get(k, '(none)')} then, {now_params.get(k, '(none)')} now" for k in keys
        )
        raise UsageError(
            f"resume={run_id} would continue a different model or data set than the checkpoint holds ({changes}). "
            f"Drop those overrides to resume the run as it was, or train the new config as a new run with "
            f"reproduce={run_id} and the overrides"
        )


def _check_same_optimizer(run_id: str, then: dict[str, Any], now: dict[str, Any]) -> None:
    changes = restored_state_changes(then, now)
    if changes:
        raise UsageError(
            f"resume={run_id} cannot change the optimizer or schedule whose state the checkpoint holds ({changes}): "
            f"Lightning restores that state as it was saved. Drop those overrides to resume the run as it was, or "
            f"train the new config as a new run with reproduce={run_id} and the overrides"
        )


def _check_same_best_checkpoint_rule(run_id: str, then: dict[str, Any], now: dict[str, Any]) -> None:
    # the checkpoint callback keeps only its best file so far, by the old rule: under a new one the epochs
    # before the resume could never be chosen, and the run's best checkpoint would be the best of the rest
    changed = [key for key in BEST_CHECKPOINT_KEYS if key in then and key in now and then[key] != now[key]]
    if changed:
        changes = "; ".join(f"{key}: {then[key]} then, {now[key]} now" for key in changed)
        raise UsageError(
            f"resume={run_id} cannot change what picks its best checkpoint ({changes}): the run kept only the best "
            f"epoch by {then[BEST_CHECKPOINT_KEYS[0]]}, so the epochs before the resume could not be compared by "
            f"the new rule. Resume by the run's own (leave out the monitor, monitor_mode or "
            f"callbacks.model_checkpoint override), or train by the new rule from the start with reproduce={run_id} "
            "and the override"
        )


def restored_state_changes(then: dict[str, Any], now: dict[str, Any]) -> str:
    """What ``now`` changes (``optimizer: Adam then, SGD now; scheduler.gamma: 0.1 then, 0.5 now``) of the
    optimizer and schedule whose state a checkpoint with the flattened config ``then`` holds; empty when none.

    Lightning loads a checkpoint's optimizer and scheduler states into whatever the config builds: Adam's
    moments into SGD, a one-cycle's step count into a cosine (whose rate it then sets from it), a StepLR's
    saved ``gamma`` over the new one, silently. The optimizer's own settings (``optimizer.lr``) may change:
    ``models.restored_optimizer`` writes them into the restored state, and a one-cycle's ``max_lr`` follows
    ``optimizer.lr``.
    """

    def name(params: dict[str, Any], group: str) -> str:
        return str(params.get(f"{group}._target_") or "none").rsplit(".", 1)[-1]

    def follows_lr(params: dict[str, Any]) -> bool:
        return params.get("scheduler.max_lr") == params.get("optimizer.lr")

    changes = [
        f"{group}: {name(then, group)} then, {name(now, group)} now"
        for group in ("optimizer", "scheduler")
        if name(then, group) != name(now, group)
    ]
    if name(then, "scheduler") == name(now, "scheduler"):
        changes += [
            f"{key}: {then.get(key, '(none)')} then, {now.get(key, '(none)')} now"
            for key in sorted({k for k in (*then, *now) if k.startswith("scheduler.")})
            if then.get(key) != now.get(key)
            and key != "scheduler._target_"
            and not (key == "scheduler.max_lr" and follows_lr(then) and follows_lr(now))
        ]
    return "; ".join(changes)


def _check_schedule_length(run_id: str, then: dict[str, Any], now: dict[str, Any], config: DictConfig) -> None:
    schedule, changes = one_cycle_length_changes(then, now, config)
    if changes:
        raise UsageError(
            f"run {run_id}'s learning-rate schedule ({schedule}) was fitted to the run's steps and is in its "
            f"checkpoint with that length: resuming with {changes} would fail once it passes that end. Train the "
            f"new length as a new run with reproduce={run_id} and those overrides, or resume without them"
        )


def one_cycle_length_changes(then: dict[str, Any], now: dict[str, Any], config: DictConfig) -> tuple[str, str]:
    """The schedule's name and the settings (``trainer.max_epochs=4 (was 2)``) that change the length a one-cycle
    schedule was fitted to (its ``total_steps`` left null), between a checkpoint's flattened config ``then``
    and ``now``; no settings when none changed or the schedule is fitted to nothing.

    Lightning restores a checkpoint's schedule as it was, with that length, so a fit on from it would fail once
    it passes that end ("Tried to step 41 times"). (A fitted cosine is refitted to the new length instead:
    ``models.tasks.refit_cosine``.)
    """
    target, filled = configured_schedule(config)
    changed = [key for key in SCHEDULE_LENGTH_KEYS if then.get(key) != now.get(key)]
    if "total_steps" not in filled or not changed:
        return target.rsplit(".", 1)[-1], ""
    changes = ", ".join(f"{key}={now.get(key, '(none)')} (was {then.get(key, '(none)')})" for key in changed)
    return target.rsplit(".", 1)[-1], changes


def _check_limits_reach_the_checkpoint(
    subject: str, checkpoint: dict[str, Any], config: DictConfig, other: str, then: dict[str, Any] | None = None
) -> None:
    """A ``trainer.max_epochs`` or ``trainer.max_steps`` below the epochs or optimizer steps a checkpoint has
    trained through is refused. Lightning stops such a fit with a traceback once it has begun (fewer epochs,
    from a checkpoint saved within an epoch), or trains nothing and tests (fewer epochs from one saved at an
    epoch's end, fewer steps from any), while the run records a limit below what it trained. ``then``, the
    flattened config of a run being resumed, names the run's own limit, which ``other`` advises to keep."""
    progress = (checkpoint.get("loops") or {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    # processed: epochs whose every batch ran, whether the checkpoint was saved at an epoch's end or within the next
    epochs = int(progress.get("processed", int(checkpoint.get("epoch", -1)) + 1))
    steps = int(checkpoint.get("global_step", 0))
    for key, trained, noun in (("max_epochs", epochs, "epoch"), ("max_steps", steps, "step")):
        limit = config.trainer.get(key)
        if limit in (None, -1) or trained <= limit:
            continue
        leave_out = other
        if then is not None:
            own = then.get(f"trainer.{key}")
            leave_out += f" ({'no limit' if own in (None, -1) else own})"
        raise UsageError(
            f"{subject} trained {counted(trained, noun)}, more than trainer.{key}={limit}: give "
            f"trainer.{key}={trained} or more, or {leave_out}"
        )


def _check_something_left_to_train(run_id: str, checkpoint: dict[str, Any], config: DictConfig) -> None:
    """A FINISHED run resumes only to train further: otherwise it would test and log its results twice."""
    epochs_done = int(checkpoint.get("epoch", -1)) + 1
    steps_done = int(checkpoint.get("global_step", 0))
    max_epochs = config.trainer.get("max_epochs")
    max_steps = config.trainer.get("max_steps", -1)
    if max_steps not in (None, -1) and steps_done >= max_steps:
        raise UsageError(
            f"run {run_id} is FINISHED and already trained {counted(steps_done, 'step')} "
            f"(trainer.max_steps={max_steps}): nothing is left to train. Raise trainer.max_steps to train it further"
        )
    if max_epochs not in (None, -1) and epochs_done >= max_epochs:
        raise UsageError(
            f"run {run_id} is FINISHED and already trained {counted(epochs_done, 'epoch')} "
            f"(trainer.max_epochs={max_epochs}): nothing is left to train. Give trainer.max_epochs={epochs_done + 1} "
            "or more to train it further"
        )
    max_time = OmegaConf.select(config, "trainer.max_time", default=None)
    limit = duration_seconds(max_time)
    # Lightning's Timer keeps the time trained in the checkpoint and counts on from it
    trained_for = ((checkpoint.get("callbacks") or {}).get("Timer") or {}).get("time_elapsed", {}).get("train")
    if limit is not None and trained_for is not None and trained_for >= limit:
        raise UsageError(
            f"run {run_id} is FINISHED: its time limit ended it after {trained_for:.0f} s of training "
            f"(trainer.max_time={max_time}), and it would stop again at once, counting on from that time. Give "
            f"a longer +trainer.max_time=DD:HH:MM:SS to train it further"
        )
    patience = OmegaConf.select(config, "callbacks.early_stopping.patience")
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if str(key).startswith("EarlyStopping") and patience is not None and state.get("wait_count", 0) >= patience:
            raise UsageError(
                f"run {run_id} is FINISHED: early stopping ended it after {counted(state['wait_count'], 'epoch')} "
                f"without improvement (callbacks.early_stopping.patience={patience}), and it would stop again at once. "
                f"Raise callbacks.early_stopping.patience, or give callbacks.early_stopping=null, to train it further"
            )
