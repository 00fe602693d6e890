"""``explab-eval``: test a trained model from a checkpoint or an MLflow run; log ``test/...`` to that run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from explab.cli import refuse_unread_additions, report_user_errors
from explab.config import config_dir, paths_from_launch_folder
from explab.errors import UsageError, first_sentence
from explab.utils.logging import get_logger

log = get_logger(__name__)

_ABSENT = object()


def _fetch_best_checkpoint(tracking_uri: str, run_id: str, folder: str, log_dir: str) -> str:
    import mlflow.artifacts

    from explab.checkpoints import CheckpointError
    from explab.resume_checks import last_checkpoint_in, run_folder_here, trained_without_checkpoints
    from explab.tracking.orphans import still_running, why_gone
    from explab.tracking.relocation import missing_artifacts
    from explab.tracking.run import no_download_bars
    from explab.tracking.store import find_trained_run, open_client

    run = find_trained_run(tracking_uri, run_id)
    artifact = run.data.tags.get("explab.best_checkpoint")
    last = last_checkpoint_in(run_folder_here(run, log_dir))  # where it is now, should its project have moved
    status = run.info.status
    gone = why_gone(run.data.tags) if status == "RUNNING" else None
    if not artifact and status == "RUNNING" and gone is None:
        # a run logs its best checkpoint as it ends, and this one has not ended: resume= would refuse it as live
        saved = (
            f"test the state it last saved now with explab-eval ckpt_path={last}"
            if last.is_file()
            else "it has saved no checkpoint yet"
        )
        raise CheckpointError(
            f"{still_running(open_client(tracking_uri), run_id)}. It logs its best checkpoint as it ends, for "
            f"explab-eval run_id={run_id} to test then; {saved}"
        )
    if not artifact and status != "FINISHED" and last.is_file():
        # a run logs its best checkpoint as it ends: a killed one has only the state it was stopped in
        ended = (
            f"was left RUNNING before it logged its best checkpoint, as {gone}"
            if gone
            else f"ended {status} before it logged its best checkpoint"
        )
        raise CheckpointError(
            f"run {run_id} {ended}; its training stopped at {last}. Continue the run to its end with explab-train "
            f"resume={run_id}, or test that state now with explab-eval ckpt_path={last}"
        )
    if not artifact:
        if trained_without_checkpoints(run):
            why, again = "it trained with checkpoint=none", f"reproduce={run_id} checkpoint=default"
        else:
            why, again = "it ended before its first checkpoint, or that was not logged", f"reproduce={run_id}"
        raise CheckpointError(
            f"run {run_id} has no logged checkpoint (tag explab.best_checkpoint is missing): {why}. "
            f"explab-train {again} trains it again with one"
        )
    log.info("testing %s of run %s", artifact, run_id)
    gone = missing_artifacts(run_id, run.info.artifact_uri)
    if gone:  # MLflow's own answer is a traceback of "Failed to download artifacts from path"
        raise CheckpointError(f"{gone}; they hold the checkpoint it logged, {artifact}")
    with no_download_bars():
        return mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact, dst_path=folder, tracking_uri=tracking_uri
        )


def _load_logged_checkpoint(tracking_uri: str, run_id: str, path: str, log_dir: str) -> dict[str, Any]:
    """``load_checkpoint`` of the checkpoint ``run_id`` logged, as downloaded to ``path`` (a temporary folder):
    one its store holds cut short or damaged is named as the run's, with the state its own folder may hold."""
    from explab.checkpoints import CheckpointError, load_checkpoint
    from explab.resume_checks import last_checkpoint_in, run_folder_here
    from explab.tracking.store import find_trained_run

    try:
        return load_checkpoint(path)
    except CheckpointError as error:
        last = last_checkpoint_in(run_folder_here(find_trained_run(tracking_uri, run_id, to_write=False), log_dir))
        instead = f"test the state the run last saved with explab-eval ckpt_path={last}, " if last.is_file() else ""
        raise CheckpointError(
            f"the checkpoint run {run_id} logged ({Path(path).name}) cannot be read from its store "
            f"({first_sentence(error.__cause__ or error)}): its copy there was cut short or damaged. Restore the "
            f"store's artifacts from a backup, {instead}or train the run again with explab-train reproduce={run_id}"
        ) from None


def with_overrides(recorded: dict[str, Any], overrides: Any) -> DictConfig:
    """The run's recorded config with ``config_overrides`` applied (``["data.data_dir=/new/place"]``).

    Each item names a key the run had (``+key=value`` adds one); the result passes the checks a training
    run's config passes, so a typo or a value out of range is named before any data is read.
    """
    from explab.cli import did_you_mean
    from explab.validation import validate_config

    items = [overrides] if isinstance(overrides, str) else list(overrides)
    config = OmegaConf.create(recorded)
    for item in map(str, items):
        key, is_set, _ = item.partition("=")
        if not is_set or not key.lstrip("+"):
            raise UsageError(
                f"config_overrides item '{item}' is not key=value; quote each item on the command line: "
                "'config_overrides=[\"data.data_dir=/new/place\"]'"
            )
        section = key.lstrip("+")
        current = OmegaConf.select(config, section, default=_ABSENT)
        if isinstance(current, DictConfig):
            # a dotlist value replaces the whole section: Hydra's "Cannot instantiate config of type str" followed
            inside = next((str(k) for k in current if not str(k).startswith("_")), "KEY")
            raise UsageError(
                f"config_overrides item '{item}' names the whole section {section} of the run's recorded config, "
                "which is not composed again: a config group option cannot be chosen here. Give the keys inside "
                f"it to change, e.g. {section}.{inside}=..."
            )
        if key.startswith("+") or current is not _ABSENT:
            continue
        raise UsageError(
            f"config_overrides: the run's config has no {key}.{did_you_mean(config, key)} "
            f"To add a new key on purpose, write +{key}=..."
        )
    merged = cast(DictConfig, OmegaConf.merge(config, OmegaConf.from_dotlist([i.lstrip("+") for i in items])))
    validate_config(merged)
    return merged


def check_weights_fit(config: DictConfig, weights: dict[str, Any], overrides: Any) -> None:
    """Refuse, before any data is read, a checkpoint whose weights do not fit the network the recorded config
    builds, naming the tensors that differ and the likely cause: torch's traceback of a size mismatch said
    neither (a ``config_overrides`` item of the network's size, or model code changed since the run)."""
    from explab.build import meta_model
    from explab.checkpoints import weights_mismatch

    model = meta_model(config)  # None: one that needs real tensors to be built, which load_state_dict checks
    mismatch = weights_mismatch(model, weights) if model is not None else ""
    if mismatch:
        cause = (
            "a config_overrides item changed the network: give only settings that keep it (data, trainer)"
            if overrides
            else "the model's code has changed since the run trained: check out the commit it recorded (git.commit)"
        )
        raise UsageError(f"the checkpoint's weights do not fit the network built here ({mismatch}): {cause}")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint named by ``cfg`` and return its ``test/...`` metrics."""
    from explab.checkpoints import load_checkpoint, plain_weights, recorded_config
    from explab.machine_checks import check_devices_here

    if not cfg.get("run_id") and not cfg.get("ckpt_path"):
        raise UsageError("explab-eval needs run_id=<MLflow run id> or ckpt_path=<path to a .ckpt file>")
    check_the_whole_test_set(cfg.trainer)
    check_devices_here(cfg)
    with tempfile.TemporaryDirectory(prefix="explab-eval-") as folder:
        if cfg.ckpt_path:
            path = cfg.ckpt_path
            checkpoint = load_checkpoint(path)
        else:
            path = _fetch_best_checkpoint(cfg.tracking_uri, cfg.run_id, folder, cfg.paths.log_dir)
            checkpoint = _load_logged_checkpoint(cfg.tracking_uri, cfg.run_id, path, cfg.paths.log_dir)
    # imported once there is a checkpoint to test: Lightning takes seconds, and a wrong run id needs none of it
    import lightning as L

    from explab.build import build_datamodule, build_model, build_trainer
    from explab.memory import memory_named
    from explab.precision import float32_matmul
    from explab.tracking import TrackedRun
    from explab.tracking.store import TrackingStoreError, check_recordable
    from explab.utils.logging import tidy_lightning_logging

    tidy_lightning_logging()
    L.seed_everything(cfg.seed, workers=True)
    record = recorded_config(checkpoint, path)
    config = with_overrides(record["config"], cfg.config_overrides)
    check_weights_fit(config, checkpoint["state_dict"], cfg.config_overrides)
    run_id = cfg.get("run_id") or record.get("mlflow_run_id")

    datamodule = build_datamodule(config)
    datamodule.check_source()
    # what the run trained in, tested on this machine's devices: a smaller or shared GPU may not hold it
    with memory_named(_smaller_test(datamodule)):
        model = build_model(config)
        model.load_state_dict(plain_weights(checkpoint["state_dict"]))  # an earlier explab's compiled run: _orig_mod
        trainer = build_trainer(cfg, callbacks=[], loggers=[])
        with float32_matmul(config.get("matmul_precision")):  # the products the run's own test computed
            results = trainer.test(model, datamodule=datamodule)
    metrics = {key: float(value) for key, value in results[0].items()}
    if run_id:
        try:
            check_recordable(cfg.tracking_uri)
        except TrackingStoreError as error:  # a colleague's run, which this account may only read
            log.warning("the metrics are not logged to MLflow run %s: %s", run_id, error)
            return metrics
        run = TrackedRun(cfg.tracking_uri, run_id)
        tags = run.client.get_run(run_id).data.tags
        saved_by = record.get("mlflow_run_id")
        other = another_checkpoint(tags, cfg.ckpt_path, run_id, saved_by) or another_test_set(tags, datamodule)
        if other:
            log.warning("the metrics are not logged to MLflow run %s: %s", run_id, other)
            return metrics
        run.log_metrics(metrics, step=int(checkpoint.get("global_step", 0)))
        run.set_tags({"explab.eval.checkpoint": str(cfg.ckpt_path or "best")})
        log.info("logged %s to MLflow run %s", ", ".join(sorted(metrics)), run_id)
    return metrics


def another_checkpoint(tags: dict[str, str], ckpt_path: Any, run_id: str, saved_by: str | None = None) -> str | None:
    """Why ``ckpt_path`` is not the checkpoint the run's own test stood for: one another run saved
    (``saved_by``, as the checkpoint records it), or one other than its ``explab.best_checkpoint``, the one its
    fit tested. None when it is, when no path was given (the best is tested), or when the run tested none
    (killed in its fit: its last state is all there is to test). Logged into the run, the test of its last
    checkpoint replaced the best's as the run's ``test/acc`` in the UI and in explab-report, and keeping
    whichever checkpoint tests best would choose it by the test set."""
    if ckpt_path and saved_by and saved_by != run_id:
        return f"{Path(str(ckpt_path)).name} was saved by MLflow run {saved_by}, and its test stands for that run"
    tested = tags.get("explab.best_checkpoint")
    if not ckpt_path or not tested:
        return None
    given, own = Path(str(ckpt_path)).name, tested.rsplit("/", 1)[-1]
    if given == own:
        return None
    return (
        f"its test/ metrics are those of {own}, the checkpoint its fit tested, and this tested {given}. "
        f"explab-eval run_id={run_id} tests its own"
    )


def another_test_set(tags: dict[str, str], datamodule: Any) -> str | None:
    """Why the set just tested is not the one the run recorded (its ``data.test_fingerprint``, or for a run
    recorded before that tag its raw data's ``data.fingerprint``); None when it is, or the run recorded
    neither. Logged into the run, a test of another set would stand for the run's own result: the data
    changed, or ``config_overrides`` cut another split (``seed``, ``data.test_fraction``) or scaled it."""
    from explab.configurations import FINGERPRINT_TAG, TEST_FINGERPRINT_TAG

    for tag, now in ((TEST_FINGERPRINT_TAG, datamodule.test_fingerprint()), (FINGERPRINT_TAG, datamodule.fingerprint)):
        then = tags.get(tag)
        if then:
            if then == now:
                return None
            if tag == TEST_FINGERPRINT_TAG and tags.get(FINGERPRINT_TAG) == datamodule.fingerprint:
                # the same samples split otherwise: some of those tested now were in the run's training split
                return (
                    f"its test split is cut otherwise from the same data ({tag} {then} then, {now} now: "
                    "config_overrides changed the split's fraction or seed), so part of what was tested now may "
                    "be samples the model trained on, and these numbers overstate it. Test without overriding "
                    "the split, or train a run on this split"
                )
            return (
                f"its test set is not the one tested now ({tag} {then} then, {now} now: the data changed, or "
                "config_overrides cut or scaled another split), and its test/ metrics stand for its own. Train "
                "or reproduce a run on this data to record these"
            )
    return None


def check_the_whole_test_set(trainer: Any) -> None:
    """Refuse a trainer that tests part of the test set (``trainer=fast_dev_run``, ``trainer=limit_batches``,
    ``+trainer.limit_test_batches``): explab-eval logs what it measures into the run as its ``test/`` metrics,
    where a few batches would stand for the whole set (and none would fail after loading everything)."""
    limit, fast = trainer.get("limit_test_batches"), trainer.get("fast_dev_run")
    if fast:
        part = f"trainer.fast_dev_run={fast} tests only its first batches"
    elif limit is not None and not (isinstance(limit, float) and limit == 1.0):
        part = f"trainer.limit_test_batches={limit} tests {'none' if limit == 0 else 'part'} of it"
    else:
        return
    raise UsageError(
        f"explab-eval logs its test metrics into the run, where they stand for the whole test set: {part}. Test "
        "the whole set (leave out the trainer option that limits it)"
    )


def _smaller_test(datamodule: object) -> str:
    """What to lower when the test does not fit: its batches, the one size explab-eval's user can change
    without changing what is tested."""
    batch = getattr(datamodule, "eval_batch_size", None)
    tested_in = f" (it tests in batches of {batch})" if batch else ""
    smaller = max(1, batch // 4) if isinstance(batch, int) else 64
    return f"Test in smaller batches{tested_in}: add 'config_overrides=[\"data.eval_batch_size={smaller}\"]'"


def _as_config_overrides(unread: list[str]) -> str:
    """What to give instead of settings of the run's config on eval's own command line, which composes none."""
    items = ", ".join(f'"{o.lstrip("+")}"' for o in unread)
    return f"it tests with the run's recorded config; give changes to it as 'config_overrides=[{items}]'"


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> dict[str, float]:
    paths_from_launch_folder(cfg, files=("ckpt_path",))
    refuse_unread_additions(cfg, "eval", _as_config_overrides)
    return evaluate(cfg)


def main() -> None:
    """Console script ``explab-eval``."""
    from explab.cli import run_hydra_app

    run_hydra_app(_hydra_main, config_name="eval")


if __name__ == "__main__":
    main()
