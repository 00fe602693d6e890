"""The CPU cores this process may use, shared out between the processes that train on them."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system has one (a SLURM job's
    allocation, ``taskset``, a container's cpuset), which ``os.cpu_count()`` ignores; every core elsewhere
    (macOS has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cores_each(processes: int) -> int:
    """The usable cores shared out between ``processes`` processes, at least one each."""
    return max(1, usable_cores() // processes)
