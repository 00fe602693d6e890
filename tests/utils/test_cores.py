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


@pytest.mark.parametrize(("threads", "warned"), [(None, False), (1, False), ("more", True)])
def test_more_torch_threads_than_cores_are_warned_of_with_the_count_that_fits(compose_cfg, caplog, threads, warned):
    """torch_threads=64 on a machine (or a SLURM allocation) of a few cores ran without a word, every parallel
    operation's threads waiting on each other."""
    import logging

    import torch

    from explab.utils.cores import usable_cores
    from explab.utils.distributed import configure_threads

    given = usable_cores() + 1 if threads == "more" else threads
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.WARNING, logger="explab.utils.distributed"):
            configure_threads(compose_cfg(f"torch_threads={'null' if given is None else given}"))
    finally:
        torch.set_num_threads(before)
    assert (f"torch_threads={given} in each of 1 training process(es)" in caplog.text) is warned, caplog.text
    assert (f"Give torch_threads={usable_cores()}, or leave it null" in caplog.text) is warned
