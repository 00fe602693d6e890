"""Hydra's basic sweeper (``-m a=1,2 b=x,y``), with every job's config checked before the first job runs.

Hydra composes each job of a batch before launching it; this sweeper also runs ``hydra.sweeper.check`` on
each composed config, so ``-m optimizer.lr=0.01,-1`` stops with one message before either job trains,
instead of training the first and ending with the second's traceback. Besides Hydra's sweep it tells each job
which keys vary between the jobs (its MLflow run is named by their values), runs every batch even after a
job failed, and ends with the report command for the runs and one line per failed job.
"""

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.utils import JobReturn, JobStatus

log = logging.getLogger(__name__)


class ExplabBasicSweeper(BasicSweeper):
    """``hydra/sweeper=explab_basic``; settings in ``ExplabBasicSweeperConf``."""

    def __init__(
        self,
        max_batch_size: int | None,
        params: dict[str, str] | None = None,
        check: str | None = None,
        swept: list[str] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.check = check
        self.swept: list[str] | None = None  # found from the jobs themselves; a value given here is ignored

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        """The next jobs, each told which keys vary between this multirun's jobs, to name its MLflow run by.

        A Hydra override: the job's own overrides, which the run records and ``reproduce=`` composes again,
        stay as they were.
        """
        from explab.config import override_key

        assert self.overrides is not None, "sweep() splits the arguments into batches first"
        if self.swept is None:
            jobs = [job for batch in self.overrides for job in batch]
            values: dict[str, set[str]] = {}
            for override in (o for job in jobs for o in job):
                values.setdefault(override_key(override), set()).add(override.partition("=")[2])
            self.swept = [key for key, seen in values.items() if len(seen) > 1 and not key.startswith("hydra.")]
        batch = super().get_job_batch()
        if not self.swept:
            return batch
        keys = ",".join(f"'{key}'" for key in self.swept)
        return [[*job, f"hydra.sweeper.swept=[{keys}]"] for job in batch]

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        if not self.check:
            super().validate_batch_is_legal(batch)
            return
        from hydra.core.utils import filter_overrides

        from explab.errors import ExplabError, UsageError
        from explab.sweep import named_function

        assert self.hydra_context is not None and self.config is not None
        check = named_function(self.check)
        for number, overrides in enumerate(batch):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            try:
                check(config, None)
            except ExplabError as error:
                given = " ".join(filter_overrides(overrides))  # without the sweeper's own hydra.sweeper.swept
                raise UsageError(f"job {number} ({given}) of this multirun: {error}") from None

    def sweep(self, arguments: list[str]) -> Any:
        from explab.cli import exit_with_message
        from explab.errors import ExplabError

        shell_uri = os.environ.get("MLFLOW_TRACKING_URI")  # before a job's MLflow sets it in this process
        try:
            returns = self._launch_every_job(arguments)
        except ExplabError as error:  # found before a job started: a message, not a traceback
            exit_with_message(error)
        jobs = [job for batch in returns for job in batch]
        _suggest_the_reports(jobs, shell_uri)
        _say_which_jobs_failed(jobs, self.swept or [])
        return returns

    def _launch_every_job(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        """Hydra's ``BasicSweeper.sweep``, less its stop at the first batch with a failed job: a seed that
        diverged does not keep the next batches from training, and the failures are told at the end."""
        from pathlib import Path

        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        params = self._parse_config()
        params.extend(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params), self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        # Hydra's own launcher runs a batch's jobs one after another in this process: given them one at a time,
        # each failed job's frames are dropped before the next trains (_drop_frames_of_failures); a launcher that
        # runs them elsewhere (SLURM, a process pool) keeps its batches, which it runs side by side
        in_this_process = isinstance(self.launcher, BasicLauncher)
        returns: list[Sequence[JobReturn]] = []
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            if not in_this_process:
                returns.append(self.launcher.launch(batch, initial_job_idx=sum(len(done) for done in returns)))
                _drop_frames_of_failures(returns)
                continue
            # the batch is announced once, as Hydra's own sweeper does, not as "Launching 1 jobs" before each job
            _LAUNCHER_LOG.info("Launching %d jobs locally", len(batch))
            with _launcher_quiet_about_single_jobs():
                for job in batch:
                    returns.append(self.launcher.launch([job], initial_job_idx=sum(len(done) for done in returns)))
                    _drop_frames_of_failures(returns)
        return returns


_LAUNCHER_LOG = logging.getLogger(BasicLauncher.__module__)


class _NotOneJobLaunched(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Launching 1 jobs locally"


@contextmanager
def _launcher_quiet_about_single_jobs() -> Iterator[None]:
    """Hydra's launcher, given one job at a time, without its "Launching 1 jobs locally" before each; the
    ``#N : overrides`` line of each job stays."""
    quiet = _NotOneJobLaunched()
    _LAUNCHER_LOG.addFilter(quiet)
    try:
        yield
    finally:
        _LAUNCHER_LOG.removeFilter(quiet)


def _first_bug(jobs: Sequence[JobReturn]) -> JobReturn | None:
    """The first failed job whose error is not a mistake explab names: the one raised with its traceback."""
    from explab.errors import ExplabError

    failed = (job for job in jobs if job.status == JobStatus.FAILED)
    return next((job for job in failed if not isinstance(job._return_value, ExplabError)), None)


def _drop_frames_of_failures(returns: list[Sequence[JobReturn]]) -> None:
    """Drop the tracebacks of the failed jobs' errors but the first bug's, which ``_say_which_jobs_failed``
    raises at the end: each traceback keeps its job's frames alive with their locals (the model, its data),
    so a long multirun's failures would fill the host's memory. Their messages are all that is said of them."""
    from explab.errors import without_frames

    jobs = [job for batch in returns for job in batch]
    bug = _first_bug(jobs)
    for job in jobs:
        if job.status == JobStatus.FAILED and job is not bug and isinstance(job._return_value, BaseException):
            without_frames(job._return_value)


def _suggest_the_reports(jobs: Sequence[JobReturn], shell_uri: str | None) -> None:
    """After two or more runs of explab's train in one experiment, the command that reports each configuration
    over its seeds: what a multirun of seeds is run for. One command per experiment (and store) the jobs
    recorded into, each read from the job's own config: ``-m experiment=a,b seed=1,2,3`` trains two."""
    from collections import Counter

    from explab.reproduce import logger_tracking_uri
    from explab.tracking.ui import report_command

    finished: Counter[tuple[str, str]] = Counter()
    for job in jobs:
        if job.status != JobStatus.COMPLETED or job.cfg is None:
            continue
        tracked_in = logger_tracking_uri(job.cfg)
        if tracked_in is not None and job.cfg.get("experiment_name"):
            finished[(str(job.cfg.experiment_name), tracked_in)] += 1
    several = len(finished) > 1
    for (experiment, tracked_in), count in finished.items():
        if count < 2:
            continue
        command = report_command(experiment, tracked_in, shell_uri)
        of = f"{count} runs of this multirun in {experiment}" if several else f"{count} runs of this multirun"
        log.info("%s finished; each configuration, over its seeds: %s", of, command)


def _say_which_jobs_failed(jobs: list[JobReturn], swept: list[str]) -> None:
    """One line per failed job, named by its ``swept`` values, with its error's message; exit 1 when each is a
    mistake explab names (a setting to change), or raise the first other error with its traceback, as Hydra
    does."""
    from hydra.core.utils import filter_overrides

    from explab.cli import ReportedError
    from explab.config import overrides_of
    from explab.errors import first_line

    failed = [(number, job) for number, job in enumerate(jobs) if job.status == JobStatus.FAILED]
    if not failed:
        return
    lines = [
        f"{len(failed)} of {len(jobs)} jobs of this multirun failed; the other {len(jobs) - len(failed)} finished:"
    ]
    for number, job in failed:
        given = filter_overrides(job.overrides or [])
        named = overrides_of(given, swept) or given
        lines.append(f"  job {number} ({' '.join(named)}): {first_line(job._return_value)}")
    print("Error: " + "\n".join(lines), file=sys.stderr)
    bug = _first_bug(jobs)
    if bug is not None:
        bug.return_value  # noqa: B018 (Hydra's way: it says which job, and raises the error with its traceback)
    raise ReportedError(1)
