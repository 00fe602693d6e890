"""The process-wide torch settings a job may change, put back as they were when it ends.

A multirun's jobs and a sweep's trials run one after another in one process, so what one job sets the next
one trains with unless it sets it again. explab splits the intra-op threads between a node's CPU DDP
processes (``configure_threads``); Lightning sets cuDNN's autotuning only when ``trainer.benchmark`` is given,
and deterministic algorithms only when ``trainer.deterministic`` is. The float32 matmul precision has its
own scope (``explab.precision.float32_matmul``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_settings_scoped_to_job() -> Iterator[None]:
    """Inside, the job may set torch's intra-op threads, cuDNN autotuning and deterministic algorithms; after,
    they are what they were before it. Left as a job set them, ``-m trainer=ddp_cpu,cpu`` would train its
    single-process job on the half of the cores the DDP job had set, and a job after one with
    ``+trainer.benchmark=true`` would autotune cuDNN unasked."""
    threads = torch.get_num_threads()
    benchmark = torch.backends.cudnn.benchmark
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
