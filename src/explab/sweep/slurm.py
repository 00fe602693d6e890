"""Sweeps on SLURM through hydra-submitit-launcher: fire-and-forget worker jobs, and sbatch's own errors.

``hydra/launcher=slurm`` alone submits each trial as a job from the sweep command (``n_jobs`` workers keep
that many jobs in flight). ``hydra.sweeper.detach=true`` instead submits ``n_jobs`` worker jobs that run
the sweep themselves, each pulling trials until the study is full, and the command returns at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from explab.errors import UsageError
from explab.sweep.workers import STOP_GRACE_SECONDS, wait_or_kill
from explab.utils.logging import get_logger

log = get_logger(__name__)

WORKER_JOB_NAME = "explab-sweep-worker"
POLL_SECONDS = 0.5  # how often a worker job looks whether its worker has ended
OWN_SIGNAL_SECONDS = 20.0  # a stopped worker's own exit (checkpoint, trial released) before it is told again
# file systems that only the node writing them sees
NODE_LOCAL_ROOTS = ("/dev/shm", "/run/user")


def in_slurm_job() -> bool:
    return "SLURM_JOB_ID" in os.environ


class SubmissionError(UsageError):
    """SLURM refused a job (an unknown partition, a limit): sbatch's own message says why."""


def submission_error(error: BaseException) -> SubmissionError | None:
    """The ``SubmissionError`` for a failed ``sbatch``, None for any other error."""
    if type(error).__name__ == "FailedJobError" and "sbatch" in str(error).lower():
        lines = [line.strip() for line in str(error).splitlines() if "error" in line.lower()]
        return SubmissionError(f"SLURM refused the job: {' '.join(lines) or str(error)} (check hydra.launcher.*)")
    return None


def is_slurm_launcher(launcher: Mapping[str, Any]) -> bool:
    """Whether ``hydra.launcher`` is hydra-submitit-launcher's SLURM launcher (``hydra/launcher=slurm``)."""
    target = str(launcher.get("_target_", ""))
    return "submitit" in target and "Slurm" in target


def check_slurm_here() -> None:
    """Refuse a sweep through SLURM on a machine without SLURM's commands. submitit looks for ``srun`` as it
    submits the first trial, which then failed with 'Could not detect "srun", are you indeed on a slurm
    cluster?', and the sweep stopped advising to fix the search space or the code."""
    missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]
    if missing:
        raise UsageError(
            f"hydra/launcher=slurm submits SLURM jobs, and this machine has no {' or '.join(missing)}: "
            "run the command on the cluster's login node, or leave hydra/launcher=slurm out to train here"
        )


def check_storage_reaches_every_node(storage_url: str | None) -> None:
    """Detached workers run on any node: their study must live where every node reaches it."""
    if not storage_url:
        raise UsageError(
            "hydra.sweeper.detach=true starts workers on other nodes, which cannot share a study held in memory: "
            "set hydra.sweeper.storage to a journal file on a shared file system or to postgresql://..."
        )
    for prefix in ("journal:///", "sqlite:///"):
        if storage_url.startswith(prefix):
            path = Path(storage_url.removeprefix(prefix)).resolve()
            if str(path).startswith(NODE_LOCAL_ROOTS):
                raise UsageError(
                    f"hydra.sweeper.storage={storage_url} lies on {path.parent}, which only this node sees, so "
                    "detached workers on other nodes could not share the study: put it on a shared file system "
                    "(the project folder) or use postgresql://..."
                )


def slurm_executor(launcher_params: Mapping[str, Any], folder: str) -> Any:
    """A submitit executor with the SLURM settings of ``hydra.launcher`` (as hydra-submitit-launcher maps
    them), for one-task worker jobs."""
    try:
        import submitit
        from omegaconf import OmegaConf

        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    except ImportError as error:
        raise UsageError(
            f"hydra.sweeper.detach=true submits through hydra-submitit-launcher, which is missing ({error}): "
            "pip install 'explab[slurm]'"
        ) from None
    params = {k: v for k, v in launcher_params.items() if k not in ("_target_", "submitit_folder")}
    timeouts = params.pop("max_num_timeout", 3)
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=timeouts)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params.update(nodes=1, tasks_per_node=1, name=WORKER_JOB_NAME)  # a worker trains its trials in one process
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    return executor


class WorkerCommand:
    """A SLURM job's function: run one sweep worker (``command``) to its end and return its exit code.

    When SLURM preempts or times the job out, submitit calls ``checkpoint``: the worker is stopped (it
    writes its trial's last.ckpt and leaves the trial to be adopted), and the same job is requeued; the
    requeued worker then continues that trial.
    """

    def __init__(self, command: list[str], env: Mapping[str, str], cwd: str) -> None:
        self.command, self.env, self.cwd = command, dict(env), cwd
        self._process: subprocess.Popen[bytes] | None = None

    def __call__(self) -> int:
        self._process = subprocess.Popen(self.command, env={**os.environ, **self.env}, cwd=self.cwd)
        # polled, not waited on: submitit runs ``checkpoint`` as a signal handler in this thread, and a blocking
        # ``wait`` holds the Popen's lock that checkpoint's own wait needs; it would never see the worker exit
        while (code := self._process.poll()) is None:
            time.sleep(POLL_SECONDS)
        if code != 0:
            raise RuntimeError(f"sweep worker exited with {code}")
        return code

    def checkpoint(self) -> Any:
        import submitit

        process = self._process
        if process is not None and process.poll() is None:
            try:  # SLURM signals the whole job step, the worker too: let it finish what that started
                process.wait(timeout=OWN_SIGNAL_SECONDS)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGTERM)
                wait_or_kill(process, STOP_GRACE_SECONDS)
        return submitit.helpers.DelayedSubmission(WorkerCommand(self.command, self.env, self.cwd))


def submit_workers(executor: Any, commands: list[tuple[list[str], dict[str, str]]]) -> list[str]:
    """Submit one worker job per (command, environment); returns the SLURM job ids."""
    cwd = os.getcwd()
    try:
        jobs = [executor.submit(WorkerCommand(command, env, cwd)) for command, env in commands]
    except Exception as error:
        raise submission_error(error) or error from None
    return [str(job.job_id) for job in jobs]
