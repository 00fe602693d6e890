"""Callbacks the tests put into real runs (``+callbacks.NAME._target_=tests.support.callbacks...``)."""

from __future__ import annotations

import builtins
import gc
import os
import signal
import sys
import weakref
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Checkpoint


class FailAtEpoch(L.Callback):
    """Raises the built-in exception ``error`` when epoch ``epoch`` starts: a run that fails after some epochs
    were logged."""

    def __init__(self, epoch: int, error: str = "RuntimeError") -> None:
        self.epoch = epoch
        self.error: type[Exception] = getattr(builtins, error)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise self.error(f"failing on purpose at epoch {self.epoch}")


class FailForSeed(L.Callback):
    """Raises as the fit starts when the run's ``seed`` is ``fails_on``: a configuration that fails on one seed
    of its replicates, as one diverges on an unlucky initialisation."""

    def __init__(self, seed: int, fails_on: int) -> None:
        self.seed, self.fails_on = seed, fails_on

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.seed == self.fails_on:
            raise RuntimeError(f"failing on purpose with seed {self.seed}")


class FailOnFitStart(L.Callback):
    """Raises as the fit starts, after the checkpoint is restored and before any training step."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise RuntimeError("failing on purpose before training")


class CountEpochs(L.Callback):
    """Appends ``TRIAL EPOCH`` to ``path`` at the end of every training epoch: what was trained, whether or
    not a checkpoint or the tracking store kept it."""

    def __init__(self, path: str, trial: int = -1) -> None:
        self.path, self.trial = path, trial

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with open(self.path, "a") as out:
            out.write(f"{self.trial} {trainer.current_epoch}\n")


def _kill_own_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtEpochStart(L.Callback):
    """SIGKILLs its process as epoch ``epoch`` starts, before checkpoint callbacks' hooks (Lightning runs
    those last): the previous epoch's values are in the store, its checkpoint not yet ``last.ckpt``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            _kill_own_process()


class KillInTrial(L.Callback):
    """SIGKILLs its process as epoch ``epoch`` starts in trial ``doomed`` (``trial`` is the job's), on every
    attempt, a resumed one too: a trial that runs its host out of memory, whose workers the kernel kills."""

    def __init__(self, trial: int, doomed: int, epoch: int = 1) -> None:
        self.killing = trial == doomed
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.killing and trainer.current_epoch == self.epoch:
            _kill_own_process()


class KillAfterEpochCheckpoint(Checkpoint):
    """SIGKILLs its process at the end of epoch ``epoch``, after the last-state checkpoint is written and
    before Lightning hands the epoch's training values to the loggers. A ``Checkpoint`` so that Lightning
    orders it with the checkpoint callbacks, after ``LastCheckpoint`` when configured after it."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            _kill_own_process()


class KillAtTestStart(L.Callback):
    """SIGKILLs its process as testing starts, after the fit wrote its final ``last.ckpt`` (unless not
    ``armed``): a run whose training is done but whose job is not."""

    def __init__(self, armed: bool = True) -> None:
        self.armed = armed

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.armed:
            _kill_own_process()


class RecordTorchSettings(L.Callback):
    """Appends ``STAGE MATMUL_PRECISION THREADS CUDNN_BENCHMARK DETERMINISTIC`` to ``path`` as the fit and the
    test start: the process-wide torch settings the run's steps are computed with (the last two as 0 or 1)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _record(self, stage: str) -> None:
        import torch

        with open(self.path, "a") as out:
            out.write(
                f"{stage} {torch.get_float32_matmul_precision()} {torch.get_num_threads()} "
                f"{int(torch.backends.cudnn.benchmark)} {int(torch.are_deterministic_algorithms_enabled())}\n"
            )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record("fit")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record("test")


_MODULES_SEEN: list[weakref.ref[L.LightningModule]] = []


class CountLiveModules(L.Callback):
    """Appends ``ALIVE SEEN`` to ``path`` as each fit starts: how many of the models that earlier fits of this
    process trained are still in memory, of how many there were (a sweep's trials run in one process)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        gc.collect()
        alive = sum(seen() is not None for seen in _MODULES_SEEN)
        with open(self.path, "a") as out:
            out.write(f"{alive} {len(_MODULES_SEEN)}\n")
        _MODULES_SEEN.append(weakref.ref(pl_module))


class ExitInTrial(L.Callback):
    """Calls ``sys.exit(code)`` as epoch ``epoch`` starts in trial ``doomed`` (``trial`` is the job's): code
    of the job's own (a library's command-line parsing, say) that exits instead of raising."""

    def __init__(self, trial: int, doomed: int, code: int = 3, epoch: int = 1) -> None:
        self.exiting = trial == doomed
        self.code, self.epoch = code, epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.exiting and trainer.current_epoch == self.epoch:
            sys.exit(self.code)


class SignalAtEpochEnd(L.Callback):
    """Sends ``signum`` (a name: ``SIGUSR2``) to this process as epoch ``epoch`` ends, as a scheduler sends
    one to a job it preempts."""

    def __init__(self, signum: str, epoch: int = 0) -> None:
        self.signum, self.epoch = signal.Signals[signum], epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), self.signum)


class EditFileAtFitEnd(L.Callback):
    """Replaces ``old`` with ``new`` in the file ``path`` once the fit is over, before the run logs its model: a
    lab that edits its code while a run trains."""

    def __init__(self, path: str, old: str, new: str) -> None:
        self.path, self.old, self.new = Path(path), old, new

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        text = self.path.read_text()
        assert self.old in text, f"{self.path} holds no {self.old!r}"
        self.path.write_text(text.replace(self.old, self.new))


class SignalInsideBestCheckpointLookup(L.Callback):
    """Sends ``signum`` (a name: ``SIGTERM``) to this process from inside fsspec's look-up of the best
    checkpoint as the test stage loads it: inside ``exists``, whose bare ``except`` swallows whatever the
    signal's handler raises, as a scheduler's signal or a hang-up can land there."""

    def __init__(self, signum: str) -> None:
        self.signum = signal.Signals[signum]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from fsspec.implementations.local import LocalFileSystem

        best, info, signum = trainer.checkpoint_callback.best_model_path, LocalFileSystem.info, self.signum

        def signalled_info(fs: LocalFileSystem, path: str, **kwargs: object) -> dict:
            if str(path) == best:
                LocalFileSystem.info = info
                os.kill(os.getpid(), signum)
            return info(fs, path, **kwargs)

        LocalFileSystem.info = signalled_info


class SignalAtBatch(L.Callback):
    """Sends ``signum`` (a name: ``SIGUSR2``) to this process as training batch ``batch`` of epoch ``epoch``
    starts (negative counts from the epoch's end: -1 is its last), as a scheduler's signal lands in any batch;
    ``armed=false`` on a resumed run disarms it."""

    def __init__(self, signum: str, epoch: int, batch: int = -1, armed: bool = True) -> None:
        self.signum, self.epoch, self.batch, self.armed = signal.Signals[signum], epoch, batch, armed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, index: int) -> None:
        at = self.batch % int(trainer.num_training_batches)
        if self.armed and trainer.current_epoch == self.epoch and index == at:
            os.kill(os.getpid(), self.signum)


class RecordTrainingBatches(L.Callback):
    """Appends ``EPOCH BATCH_INDEX SAMPLES`` to ``path`` for every training batch that ends, SAMPLES being the
    batch's targets and the sum of its inputs: what the fit trained on, in the order it did."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        x, y = batch[0], batch[1]
        with open(self.path, "a") as out:
            out.write(f"{trainer.current_epoch} {batch_idx} {y.tolist()} {float(x.sum()):.4f}\n")
