"""A SLURM worker job's function (``WorkerCommand``) under preemption, without a cluster.

submitit calls ``checkpoint`` from its signal handler, in the thread that runs the job's function; SLURM
signals every process of the job step, the worker too. The handler must see the worker end as soon as it
does, and hand back the requeue.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from explab.sweep.slurm import OWN_SIGNAL_SECONDS
from tests.conftest import root_env

JOB = """
import os, signal, sys, threading, time
from pathlib import Path
from explab.sweep.slurm import WorkerCommand

ready = Path("ready")
worker = [sys.executable, "-c", (
    "import signal, sys, time, pathlib; signal.signal(signal.SIGUSR2, lambda *a: sys.exit(0)); "
    "pathlib.Path('ready').touch(); time.sleep(120)"
)]
command = WorkerCommand(worker, {}, os.getcwd())

def preempted(signum, frame):
    started = time.monotonic()
    requeue = command.checkpoint()
    print(f"checkpoint: {type(requeue).__name__} after {time.monotonic() - started:.1f} s", flush=True)

signal.signal(signal.SIGUSR2, preempted)

def slurm_signals_the_step():
    while not ready.exists():
        time.sleep(0.1)
    os.kill(command._process.pid, signal.SIGUSR2)
    os.kill(os.getpid(), signal.SIGUSR2)

threading.Thread(target=slurm_signals_the_step, daemon=True).start()
print("exit code", command(), flush=True)
"""


def test_a_preempted_worker_job_sees_its_worker_end_and_requeues(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", JOB], cwd=tmp_path, env=root_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("checkpoint:")]
    seconds = float(line.split(" after ")[1].removesuffix(" s"))
    assert "DelayedSubmission" in line and seconds < OWN_SIGNAL_SECONDS, line
    assert "exit code 0" in done.stdout
