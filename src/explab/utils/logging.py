"""Rank-zero-aware logging: under DDP only the main process talks, unless asked otherwise."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

# Lightning keeps the process's global rank on this function (``rank_zero_only.rank``); it lives in the small
# lightning_utilities package, so commands that never train (a config print, a report) skip importing torch
from lightning_utilities.core.rank_zero import rank_zero_only

# where launchers (torchrun, SLURM, LSF) put the rank, read in Lightning's order until Lightning sets its own
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def global_rank() -> int:
    """This process's global rank: Lightning's, or before Lightning is imported, the launcher's."""
    rank = getattr(rank_zero_only, "rank", None)
    if rank is None:
        rank = next((int(os.environ[k]) for k in RANK_VARIABLES if os.environ.get(k) is not None), 0)
    return int(rank)


class RankZeroLogger(logging.LoggerAdapter):
    """A logger that emits on global rank 0 only; ``rank_zero_only=False`` lets every rank speak."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.getLogger(name), {})

    def log(  # type: ignore[override]  # one more keyword than LoggerAdapter.log: who may speak
        self, level: int, msg: object, *args: Any, rank_zero_only_: bool = True, **kwargs: Any
    ) -> None:
        rank = global_rank()
        if rank_zero_only_ and rank != 0:
            return
        if self.isEnabledFor(level):
            msg, kwargs = self.process(msg, kwargs)
            if rank != 0:
                msg = f"[rank {rank}] {msg}"
            self.logger.log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
        return msg, dict(kwargs)


def get_logger(name: str) -> RankZeroLogger:
    return RankZeroLogger(name)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


_DROP_TIPS = _DropTips()


def tidy_lightning_logging() -> None:
    """Lightning's messages once each, without its adverts.

    The ``lightning`` package gives its logger a console handler of its own and lets records propagate as
    well, so under Hydra's logging (handlers on the root logger) every Lightning message is printed twice,
    once as ``INFO: ...``. Where the root logger has handlers, Lightning's own console handler is dropped and
    its messages appear once, in Hydra's format and in the job's log file. Lightning 2.6 also prints two
    "💡 Tip: try installing litlogger / litmodels" lines for every Trainer: advertising, not news about the
    run, repeated in every job of a sweep; they are filtered out. Where SLURM is installed, Lightning warns
    twice per run that ``srun`` is not used and advises prefixing the command with it. Outside a SLURM job
    (on a login node, a GPU server) explab reaches SLURM through its launcher (``hydra/launcher=slurm``), whose
    jobs run under ``srun``, so the advice is dropped there; inside a job started without ``srun`` it stands.
    Lightning 2.6 also calls a pytree API that torch deprecated, and torch warns about it in every run
    (Lightning-AI/pytorch-lightning#21326): nothing a researcher can act on, so that one warning is dropped
    where Lightning's file raises it. Lightning warns that a run's checkpoint folder "exists and is not
    empty" on every resume and requeue: explab continues a run in its own folder on purpose and refuses a new
    run a folder another holds (``explab.machine_checks``), so the warning never names a mistake, and only
    alarms. Calling it again changes nothing.
    """
    from explab.sweep.slurm import in_slurm_job  # it logs through this module: imported here, not above

    warnings.filterwarnings(
        "ignore",
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        module="lightning.pytorch.utilities._pytree",
    )
    warnings.filterwarnings("ignore", r"Checkpoint directory .* exists and is not empty")
    if not in_slurm_job():
        warnings.filterwarnings("ignore", "The `srun` command is available on your system but is not used")
    if logging.getLogger().handlers:
        lightning_logger = logging.getLogger("lightning")
        for handler in list(lightning_logger.handlers):
            if type(handler) is logging.StreamHandler:  # the console handler ``import lightning`` adds
                lightning_logger.removeHandler(handler)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DROP_TIPS)  # adding twice is a no-op


@contextlib.contextmanager
def logger_at_least(name: str, level: int) -> Iterator[None]:
    """The logger ``name`` drops records below ``level`` while inside, and is as it was after."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(max(before, level))
    try:
        yield
    finally:
        logger.setLevel(before)
