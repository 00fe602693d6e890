"""The cores a training process takes threads for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs an affinity of 2+ cores"
)
def test_a_process_confined_to_one_core_shares_out_that_core_not_the_machines() -> None:
    """A SLURM job's allocation or ``taskset`` confines a process to some cores; ``os.cpu_count()`` still counts
    every core of the machine, and threads for all of them would crowd the few it has."""
    code = (
        "import os\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from explab.utils.cores import cores_each, usable_cores\n"
        "print(usable_cores(), cores_each(1), cores_each(2))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1", "1", "1"]
