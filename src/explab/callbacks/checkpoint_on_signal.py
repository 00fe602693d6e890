"""SIGTERM, SIGHUP, SIGUSR1 or SIGUSR2 during training: write last.ckpt at the end of the batch in hand, then
stop.

Schedulers stop jobs with these signals (SLURM's preemption, ``--signal`` as Lightning (USR1) and submitit
(USR2) ask for it, ``scancel``, ``kill``), and a terminal that hangs up (a dropped ssh session) sends SIGHUP
to the command started in it. A requeued or adopted job, or ``resume=``, continues from last.ckpt: written
right away it loses no finished step, where the interval of ``LastCheckpoint`` alone could lose minutes.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

from explab.callbacks.last_checkpoint import LastCheckpoint
from explab.requeue import request_requeue
from explab.utils.epoch_progress import written_mid_epoch
from explab.utils.signals import Terminated, caught_unless_ignored

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


class CheckpointOnSignal(Checkpoint):
    """On a stop signal, note it; at the end of the current batch write ``last``'s checkpoint (every rank
    agrees when any got it), hand the signal to the handler it replaced (submitit's requeues the job,
    Lightning's tells DDP ranks), then raise ``Terminated``: the run ends KILLED with its state on disk.

    With ``requeue_on_usr1`` (a task of a SLURM job, see ``build.cluster_plugins``) rank 0 also requeues the
    job on SIGUSR1 as the process leaves, in place of Lightning's auto-requeue, which would first write a
    second full checkpoint.

    The batch is finished first: a checkpoint written from inside the optimizer step could hold half an
    update. With ``trainer.accumulate_grad_batches`` the stop waits for the batch whose optimizer step ends
    the accumulation: a checkpoint holds no gradients, and the resumed step would have lacked those of the
    batches before it. A resumed fit goes on with the batch after the one written, and Lightning does not
    run a validation that was due after that batch. So a signal in a batch that a validation follows
    (``trainer.val_check_interval`` within the epoch) stops once that validation is written and judged, and
    one in an epoch's last batch waits for the end of the next batch (the epoch is validated and its
    checkpoints written in between), or for the end of the fit.
    Handlers are installed once training starts, after Lightning's own, which Lightning's teardown replaces
    with whatever was there before the fit.

    A ``Checkpoint`` so that Lightning runs it after the other callbacks and after the checkpoints listed
    before it: a stop after a validation then comes once early stopping and the best checkpoint have seen it.
    """

    def __init__(self, last: LastCheckpoint, requeue_on_usr1: bool = False) -> None:
        self.last = last
        self.requeue_on_usr1 = requeue_on_usr1
        self.received: int | None = None
        self.after_validation = False
        self.frame: Any = None
        self.replaced: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.received, self.after_validation = None, False
        if threading.current_thread() is threading.main_thread():
            self.replaced = {
                signum: signal.signal(signum, self._note) for signum in caught_unless_ignored(STOP_SIGNALS)
            }

    def _note(self, signum: int, frame: Any) -> None:
        self.received, self.frame = signum, frame

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        # after an epoch's last batch come its validation, its epoch metrics, its scheduler step and its
        # checkpoints; a fit resumed from a checkpoint written before them goes straight on to the next epoch,
        # and that epoch would never be validated
        if not written_mid_epoch(trainer):
            return
        # every rank has the same after_validation, so none of them skips the others' reduction alone
        if not (self.after_validation or self._received_on_any_rank(trainer)):
            return
        if accumulates_after_this_batch(trainer):
            return  # the gradients added up so far are in no checkpoint: stop once they are a step
        if not self.after_validation and validates_after_this_batch(trainer):
            self.after_validation = True
            return
        self._stop(trainer)  # also where a validation that was due ran nothing (it had no batches)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.after_validation:
            self._stop(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a signal in the last epoch's last batch or its validation: the fit is over, and stops as it is
        if self._received_on_any_rank(trainer):
            self._stop(trainer)

    def _received_on_any_rank(self, trainer: L.Trainer) -> bool:
        received = self.received is not None
        if trainer.world_size > 1:  # one rank's signal stops them all at the same point
            received = trainer.strategy.reduce_boolean_decision(received, all=False)
        return bool(received)

    def _stop(self, trainer: L.Trainer) -> None:
        signum = self.received or signal.SIGTERM
        assert self.last.dirpath is not None
        path = os.path.join(self.last.dirpath, f"{self.last.filename}{self.last.FILE_EXTENSION}")
        self.last._save_checkpoint(trainer, path)
        self.last.commit(trainer)  # the loggers write what they hold, then it becomes last.ckpt
        replaced = self.replaced.get(signum)
        if callable(replaced):
            replaced(signum, self.frame)
        if self.requeue_on_usr1 and signum == signal.SIGUSR1 and trainer.is_global_zero:
            # as the process leaves, once its run is ended KILLED: SLURM stops a job it requeues at once,
            # which would cut that ending short and leave the run RUNNING
            atexit.register(request_requeue)
        raise Terminated(128 + signum)


def accumulates_after_this_batch(trainer: L.Trainer) -> bool:
    """Whether the batch that just ended left its gradients for the next batches to add to
    (``trainer.accumulate_grad_batches``): no optimizer step came after it. Asked of Lightning's own rule, a
    private method; a Lightning without it answers False."""
    rule = getattr(trainer.fit_loop, "_should_accumulate", None)
    return bool(rule is not None and rule())


def validates_after_this_batch(trainer: L.Trainer) -> bool:
    """Whether Lightning validates once the batch that just ended is done: asked of Lightning's own rule
    (every ``val_check_interval`` batches, a time interval, an early stop), which it keeps in a private
    method; a Lightning without it answers False, and the stop comes at once."""
    epoch_loop = trainer.fit_loop.epoch_loop
    rule = getattr(epoch_loop, "_should_check_val_fx", None)
    fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
    return bool(rule is not None and fetcher is not None and rule(fetcher))
