"""The training phase of a job: fit, then test the best checkpoint, and collect every final metric."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from explab.build import Job
from explab.errors import UsageError

if TYPE_CHECKING:
    import lightning as L

    from explab.sweep.trial import TrialJob
    from explab.tracking import TrackedRun

FIT_SECONDS = "perf/fit_seconds"
PARAMETERS = "model/parameters"  # trainable ones: a sweep can take model size as an objective
JOB_METRICS = (FIT_SECONDS, PARAMETERS)  # what every job returns beside its task module's metrics


def fit_and_test(job: Job, trial: TrialJob, run: TrackedRun | None) -> dict[str, float]:
    """Fit ``job.model``; unless ``test=false``, test its best checkpoint (the last when none is kept).

    Returns:
        Every metric Lightning holds at the end (``train/``, ``val/``, ``test/``), ``perf/fit_seconds`` and
        ``model/parameters``.

    Raises:
        optuna.TrialPruned: the trial's pruner stopped the fit.
        FloatingPointError: a sweep's objective is NaN or infinite.
    """
    cfg, trainer = job.cfg, job.trainer
    start = time.perf_counter()
    try:
        trainer.fit(job.model, datamodule=job.datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except ValueError as error:
        explained = _explained(error, trainer)
        if explained is error:
            raise  # raised from itself, the error would be its own cause: a loop to whatever walks its chain
        raise explained from error
    # the whole fit (sanity check, epochs, validation, checkpoints, logging): sweeps and benchmarks compare it
    # with the job's total time
    metrics = {**as_floats(trainer.callback_metrics), FIT_SECONDS: time.perf_counter() - start}
    if run is not None and cfg.get("ckpt_path"):
        # resumed from the checkpoint of its last epoch (killed while testing, say), the fit trains nothing and
        # Lightning holds no epoch metrics; the run's record has them, a sweep's objective among them
        metrics = {**run.client.get_run(run.run_id).data.metrics, **metrics}
    # counted after the fit: lazy layers have no shape before their first batch
    metrics[PARAMETERS] = float(sum(p.numel() for p in job.model.parameters() if p.requires_grad))
    if run is not None:
        run.log_metrics({name: metrics[name] for name in JOB_METRICS}, step=trainer.global_step)
    trial.raise_if_pruned()
    if cfg.get("test", True):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        trainer.test(job.model, datamodule=job.datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(as_floats(trainer.callback_metrics))
    trial.check_objective(metrics)
    return metrics


def _explained(error: ValueError, trainer: L.Trainer) -> ValueError:
    """A ``ValueError`` from inside ``fit`` that a setting caused, as a ``UsageError`` that names the fix;
    ``error`` otherwise."""
    return _interval_longer_than_an_epoch(trainer) or _one_sample_for_batch_norm(error, trainer) or error


def _interval_longer_than_an_epoch(trainer: L.Trainer) -> UsageError | None:
    """A validation interval longer than an epoch: Lightning finds it only once it has counted the training
    batches, inside ``fit`` and so after the run opened; its count is still on the fit loop, in this device's
    batches."""
    interval, batches = trainer.val_check_interval, trainer.fit_loop.max_batches
    if not (isinstance(interval, int) and trainer.check_val_every_n_epoch is not None and batches < interval):
        return None
    return UsageError(
        f"trainer.val_check_interval={interval} validates every {interval} training batches, and an epoch here has "
        f"{batches:g} per device. Give at most {batches:g}, a fraction of an epoch (0.25: four times an epoch), "
        f"or set trainer.check_val_every_n_epoch=null to count the {interval} batches across epochs"
    )


def _one_sample_for_batch_norm(error: ValueError, trainer: L.Trainer) -> UsageError | None:
    """A training batch of one sample in a batch norm layer ("Expected more than 1 value per channel when
    training"), which a batch size that leaves one sample over for an epoch's last batch gives; the batch sizes
    next to it that leave more are named where the data module is explab's."""
    from explab.data.tensor_batches import TensorBatches

    if not str(error).startswith("Expected more than 1 value per channel when training"):
        return None
    what = "a training batch of 1 sample reached a batch norm layer, which needs 2 or more to train"
    loader = trainer.train_dataloader
    if not (isinstance(loader, TensorBatches) and loader.last_batch_size() == 1):
        return UsageError(f"{what}: give a batch size that leaves no epoch a last batch of 1 sample")
    samples, size = loader.num_samples, loader.batch_size
    shard = len(loader) * size - size + 1  # this device's samples of a pass: the last batch holds one
    fits = [b for b in (*range(size - 1, 1, -1), *range(size + 1, 2 * size + 2)) if shard % b != 1]
    closest = sorted(fits, key=lambda b: abs(b - size))[:2]
    return UsageError(
        f"{what}: {samples} training samples"
        + (f", {shard} per device," if shard != samples else "")
        + f" in batches of data.batch_size={size} leave 1 for the last batch of each epoch. Give data.batch_size="
        + " or ".join(map(str, sorted(closest)))
        + ", or a model without batch norm"
    )


def as_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The values that are numbers (tensors included), as floats."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        with contextlib.suppress(TypeError, ValueError):
            out[key] = float(value)
    return out
