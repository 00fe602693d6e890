"""``hydra.sweeper.n_jobs=K``: one command, K worker processes of the same sweep on this machine.

Each worker is the same command line run again as a plain one-worker sweep of the same study, so it pulls
its next trial the moment it is free; none waits for a batch. The pool shares the machine out (torch
threads, GPUs), replaces a worker that something else killed, and stops every worker when it is stopped
itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

from explab.errors import UsageError
from explab.utils.cores import cores_each
from explab.utils.logging import get_logger
from explab.utils.signals import Terminated

log = get_logger(__name__)

POOL_ENV = "EXPLAB_SWEEP_POOL"  # set on a pool's workers: the pool's process owns the parent run and summary
STOP_GRACE_SECONDS = 60.0  # a stopped worker writes last.ckpt and closes its runs; then it is killed
_PR_SET_PDEATHSIG = 1


def is_pool_worker() -> bool:
    """Whether this process is a worker a pool started (and not the command a researcher ran)."""
    return bool(os.environ.get(POOL_ENV))


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_per_worker(n_jobs: int, trials_per_gpu: int | None, gpus: Sequence[str]) -> list[str | None]:
    """The GPU of each worker, dealt round-robin; ``trials_per_gpu`` caps the workers per GPU and, with
    ``n_jobs=1``, asks for as many workers as fit. None for each worker where no GPU is visible."""
    if trials_per_gpu is not None:
        if trials_per_gpu < 1:
            raise UsageError(f"hydra.sweeper.trials_per_gpu must be >= 1, got {trials_per_gpu}")
        if not gpus:
            raise UsageError(
                f"hydra.sweeper.trials_per_gpu={trials_per_gpu} packs workers onto GPUs, but this machine shows "
                f"none (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Drop it to run "
                "the workers on the CPU (hydra.sweeper.n_jobs=K)"
            )
        capacity = len(gpus) * trials_per_gpu
        if n_jobs == 1:
            n_jobs = capacity
        elif n_jobs > capacity:
            raise UsageError(
                f"hydra.sweeper.n_jobs={n_jobs} workers do not fit {len(gpus)} GPU(s) at trials_per_gpu="
                f"{trials_per_gpu} ({capacity} at most): lower n_jobs or raise trials_per_gpu"
            )
    if not gpus:
        return [None] * n_jobs
    return [gpus[i % len(gpus)] for i in range(n_jobs)]


def threads_per_worker(n_jobs: int) -> int:
    """This machine's cores (those this process may use) shared out between ``n_jobs`` workers."""
    return cores_each(n_jobs)


def this_command() -> list[str]:
    """The command line this process was started with, runnable again (a console script or ``app.py``)."""
    return [sys.executable, *sys.argv]


@dataclass
class WorkerPool:
    """Run ``command`` once per entry of ``environments`` (extra variables for each worker) until all end.

    A worker killed by a signal the pool did not send (SIGKILL, the OOM killer) is replaced, up to
    ``max_replacements`` times: its trial is adopted by the next free worker. SIGINT or SIGTERM to the
    pool sends SIGTERM to every worker, waits for them (``STOP_GRACE_SECONDS``), then raises
    ``KeyboardInterrupt`` or ``Terminated`` as the pool's own process would have. Workers die with the
    pool if it is killed, so none is left behind.
    """

    command: list[str]
    environments: list[dict[str, str]]
    max_replacements: int
    poll_seconds: float = 0.2
    _workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _stopped_by: int | None = None

    def run(self) -> list[int]:
        """Start the workers and wait for them; returns the exit codes of those that failed."""
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._workers = [self._start(env) for env in self.environments]
            return self._wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._terminate_all()

    def _start(self, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen(
            self.command,
            env={**os.environ, **env},
            start_new_session=True,  # a terminal's Ctrl-C reaches the pool only, which stops each worker once
            preexec_fn=_die_with_parent,
        )
        log.info("sweep worker %d started (%s)", worker.pid, ", ".join(f"{k}={v}" for k, v in env.items()))
        return worker

    def _wait(self) -> list[int]:
        failed: list[int] = []
        replacements = 0
        running = dict(enumerate(self._workers))
        while running:
            if self._stopped_by is not None:
                self._terminate_all()
                raise KeyboardInterrupt if self._stopped_by == signal.SIGINT else Terminated(128 + self._stopped_by)
            for slot, worker in list(running.items()):
                code = worker.poll()
                if code is None:
                    continue
                del running[slot]
                if code < 0 and replacements < self.max_replacements:  # killed by someone else
                    replacements += 1
                    log.warning("sweep worker %d was killed (signal %d): starting another", worker.pid, -code)
                    running[slot] = self._workers[slot] = self._start(self.environments[slot])
                elif code != 0:
                    failed.append(code)
            time.sleep(self.poll_seconds)
        return failed

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self._stopped_by = signum

    def _terminate_all(self) -> None:
        alive = [w for w in self._workers if w.poll() is None]
        for worker in alive:
            worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in alive:
            wait_or_kill(worker, max(0.1, deadline - time.monotonic()))


def wait_or_kill(worker: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait ``seconds`` for a worker that was told to stop, then kill it."""
    try:
        worker.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        log.warning("sweep worker %d did not stop within %.0f s: killed", worker.pid, seconds)
        worker.kill()
        worker.wait()


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGKILL when the pool's process dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
