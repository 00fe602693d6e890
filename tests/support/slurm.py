"""A real one-node SLURM cluster for tests: munged, slurmctld and slurmd from Debian's slurm-wlm and munge.

Everything the cluster writes (configuration, state, logs, pid files) lives in one folder; clients find it
through ``SLURM_CONF``, which child processes (submitit's sbatch calls) inherit. Ports are picked free, so
a cluster left over by an interrupted run cannot answer for this one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.network import free_port

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


def why_not_available() -> str | None:
    """Why this machine cannot run the cluster, or None when it can."""
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge (.ci/run does)"
    if os.geteuid() != 0:
        return "the test cluster runs its daemons as root, and this user is not root"
    return None


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 * 9 // 10
    return 4000


class SlurmCluster:
    """``start()`` brings the cluster up and waits until a job can run; ``stop()`` ends its daemons."""

    partition = "debug"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self._started_munge = False

    def _write_conf(self) -> None:
        for folder in ("state", "spool"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=explabtest",
                    f"SlurmctldHost={self.node}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    "AuthType=auth/munge",
                    # a requeued job waits out its credential's lifetime before it starts again (120 s by default)
                    "AuthInfo=cred_expire=10",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "JobAcctGatherType=jobacct_gather/none",
                    "SchedulerType=sched/backfill",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "SlurmctldTimeout=30",
                    "SlurmdTimeout=30",
                    "MinJobAge=600",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.root / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'slurmd.log'}",
                    f"NodeName={self.node} CPUs={os.cpu_count()} RealMemory={_memory_mb()} State=UNKNOWN",
                    f"PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def _start_munge(self) -> None:
        if MUNGE_SOCKET.exists() and subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return  # a munged is already serving this machine
        MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "-c"], check=True)
            shutil.chown(key, "munge", "munge")
            key.chmod(0o400)
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
        self._started_munge = True

    def start(self, timeout: float = 60.0) -> None:
        self._start_munge()
        self._write_conf()
        env = {**os.environ, **self.env}
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, env=env)
        subprocess.run(["slurmd", "-f", str(self.conf)], check=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run("sinfo", "-h", "-o", "%t", check=False).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"SLURM node not idle after {timeout:.0f} s: {self.logs()}")

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command), capture_output=True, text=True, env={**os.environ, **self.env}, check=check, timeout=60
        )

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (MinJobAge keeps finished ones), with its state and times."""
        out = self.run("squeue", "-h", "-t", "all", "-o", "%i|%j|%T|%S|%e").stdout
        keys = ("id", "name", "state", "start", "end")
        return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines() if line.strip()]

    def settled_jobs(self, timeout: float = 60.0) -> list[dict[str, str]]:
        """``jobs()`` once none is pending, running or completing: a job's result is on disk a moment before
        SLURM calls it COMPLETED."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.jobs()
            if time.monotonic() > deadline or not any(
                j["state"] in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING") for j in jobs
            ):
                return jobs
            time.sleep(0.5)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.root / name).read_text()[-3000:]}"
            for name in ("slurmctld.log", "slurmd.log")
            if (self.root / name).exists()
        )

    def _job_steps(self) -> list[int]:
        """This cluster's slurmstepd processes and everything they started: a job's steps outlive slurmd."""
        parents: dict[int, int] = {}
        steps = []
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError, ValueError):
                parents[int(proc.name)] = int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
                if proc.joinpath("comm").read_text().strip() != "slurmstepd":
                    continue
                if f"SLURM_CONF={self.conf}".encode() in proc.joinpath("environ").read_bytes().split(b"\0"):
                    steps.append(int(proc.name))

        def started_by_a_step(pid: int) -> bool:
            while pid > 1:
                if pid in steps:
                    return True
                pid = parents.get(pid, 0)
            return False

        return [pid for pid in parents if started_by_a_step(pid)]

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what still runs, end the daemons and wait until they are gone (they write their state on the
        way out)."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.run("scancel", f"--partition={self.partition}", check=False)
        pids = []
        for name in ("slurmd.pid", "slurmctld.pid"):
            pid_file = self.root / name
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    pid = int(pid_file.read_text().strip())
                    os.kill(pid, signal.SIGTERM)
                    pids.append(pid)
        deadline = time.monotonic() + timeout
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in [*pids, *self._job_steps()]:  # a test cluster keeps nothing worth waiting longer for
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._started_munge:
            subprocess.run(["pkill", "-u", "munge", "munged"], check=False)
