"""A job's code that calls ``sys.exit``: an error of that job, not the end of the process that runs it.

Hydra's launcher catches a job's ``Exception`` only: a ``SystemExit`` from a trial's code would end the whole
sweep with the exit's status and no word of why, and a single run would end KILLED (FINISHED after
``sys.exit(0)``), as if stopped on purpose, though its code had cut its training short.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from explab.utils.signals import interrupted_by_ctrl_c, signal_whose_handler_raised


class ExitCalled(RuntimeError):
    """The job's own code (a callback, a data module, a library it calls) raised ``SystemExit``."""


def exit_as_error(exit_: SystemExit) -> ExitCalled | None:
    """``exit_`` as the error of the job whose code raised it, naming where; None for a stop, which ends the
    process on purpose: Ctrl-C (Lightning answers it in a fit with ``sys.exit(1)``), the ``SystemExit``
    subclasses explab raises (``Terminated``, an error already reported), and an exit from a signal's handler
    (submitit's, once it has requeued a preempted job: failing that job would hand submitit its error as the
    job's result, in place of the requeued attempt's)."""
    if type(exit_) is not SystemExit or interrupted_by_ctrl_c(exit_):
        return None
    if signal_whose_handler_raised(exit_) is not None:
        return None
    frames = traceback.extract_tb(exit_.__traceback__)
    where = f" in {frames[-1].name} ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return ExitCalled(
        f"the job's code called sys.exit({exit_.code!r}){where}, which would end the process that runs it; "
        "the job fails instead (in a sweep, its trial alone). Raise an exception where the code exits"
    )


@contextmanager
def exit_is_an_error() -> Iterator[None]:
    """Inside, a ``SystemExit`` that is not a stop is raised as ``ExitCalled`` (``exit_as_error``) from it."""
    try:
        yield
    except SystemExit as exit_:
        error = exit_as_error(exit_)
        if error is None:
            raise
        raise error from exit_
