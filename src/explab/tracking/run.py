"""One MLflow run's lifecycle, owned in one place: created before training, always ended with a status.

Lightning's ``MLFlowLogger`` writes metrics into this run (given its id) but never ends it; ``TrackedRun``
does, so a run is FINISHED, FAILED or KILLED and never left RUNNING by an exception or an interrupt.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explab.errors import Stopped, UsageError, first_line
from explab.tracking.full_store import out_of_room, quiet_mlflow_about_room, room_for, store_out_of_room
from explab.tracking.orphans import close_orphaned_runs, process_tags, still_running
from explab.tracking.staging import StagingError, room_to_stage
from explab.tracking.store import check_recordable, deleted_experiment, open_client, server_access
from explab.utils.logging import get_logger
from explab.utils.signals import (
    Terminated,
    held,
    interrupted_by_ctrl_c,
    signal_whose_handler_raised,
    stop_signals_raise_terminated,
)

PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # read by MLflow each time it starts a transfer

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = get_logger(__name__)


@contextmanager
def no_download_bars() -> Iterator[None]:
    """MLflow without its artifact progress bars while inside: for reads of a few small files (a run's
    overrides, a model read back to validate its input example), where a bar per file only fills the console."""
    before = os.environ.get(PROGRESS_BAR)
    os.environ[PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = before


PARAMS_PER_CALL = 100  # MLflow's log_batch limit for params
RESUMED_FROM_HOST_TAG = "explab.resumed_from_host"  # where a run resumed on another host had run before
STATUS_REASON_TAG = "explab.status_reason"  # why the run ended as it did (FAILED, KILLED)
RESUME_FAILED_TAG = "explab.resume_failed"  # why a resume failed before training, the run kept as it was
RESUMED_AFTER_TAG = "explab.resumed_after"  # how the run had ended before a resume trained it on
# what becomes of a run whose end its store had no room to record (``close_orphaned_runs``)
SHOWS_RUNNING_UNTIL_CLOSED = (
    "it shows RUNNING until the next run of its experiment finds its process gone and marks it KILLED"
)


def run_status_for(error: BaseException | None) -> str:
    """FINISHED on success, KILLED on an interrupt or termination, FAILED on any other error."""
    if error is None:
        return "FINISHED"
    if isinstance(error, KeyboardInterrupt):
        return "KILLED"
    if isinstance(error, SystemExit):
        return "FINISHED" if error.code in (0, None) else "KILLED"
    if is_trial_pruned(error) or isinstance(error, Stopped) or _is_lightning_sigterm(error):  # on purpose
        return "KILLED"
    return "FAILED"


def stop_described(error: BaseException) -> str | None:
    """What stopped the run when ``error`` is Ctrl-C or a signal ("Interrupted (Ctrl-C)", "Terminated by
    SIGTERM"); None for any other error, which its own type and message describe. (Lightning's ``exit(1)``
    after a Ctrl-C, as "SystemExit: 1", would tell the reader of the run's tag nothing.)"""
    if interrupted_by_ctrl_c(error):
        return "Interrupted (Ctrl-C)"
    if isinstance(error, Terminated) and isinstance(error.code, int) and error.code > 128:
        return f"Terminated by {signal.Signals(error.code - 128).name}"
    if isinstance(error, SystemExit) and (by_handler := signal_whose_handler_raised(error)) is not None:
        # submitit's handler of a preemption, once it has requeued the job
        return f"Stopped by {by_handler.name}, whose handler called sys.exit({error.code!r})"
    return None


def is_trial_pruned(error: BaseException) -> bool:
    """Whether ``error`` is Optuna's ``TrialPruned``; only a process that imported Optuna can raise it, so
    plain runs never pay for the import."""
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(error, optuna.TrialPruned)


def _is_lightning_sigterm(error: BaseException) -> bool:
    exceptions = sys.modules.get("lightning.pytorch.utilities.exceptions")
    return exceptions is not None and isinstance(error, exceptions.SIGTERMException)


@contextmanager
def run_lifecycle(
    open_run: Callable[[], TrackedRun], continued_by: Callable[[str], str] | None = None
) -> Iterator[TrackedRun]:
    """The run ``open_run()`` creates or reopens, ended with the status its outcome deserves; the error of a
    failed run is recorded on it.

    SIGTERM (a scheduler's stop, ``kill``) becomes an exception from before the run exists, so the run ends
    KILLED instead of the process dying with it still RUNNING; during ``fit`` Lightning adds its own graceful
    handling. Ctrl-C and SIGTERM wait while the run is opened: one landing between the store creating it and
    ``run`` naming it would leave it RUNNING with nobody to end it.

    A store that runs out of room while the run records into it ends the block with ``out_of_room``, and the
    temporary folder one with the ``StagingError`` that names it: what became of the run, and, when
    ``continued_by`` is given, how the command given the run's id continues it.
    """
    quiet_mlflow_about_room()
    opened: list[TrackedRun] = []

    def open_and_keep() -> TrackedRun:
        opened.append(open_run())
        return opened[0]

    try:
        # a stop that a library swallowed ends the run KILLED, as the stop it was, not FAILED with what it left
        with (
            stop_signals_raise_terminated() as stops,
            held(open_and_keep, TrackedRun.end) as run,
            stops.not_swallowed(),
        ):
            yield run
    except StagingError as error:
        if not opened:
            raise
        raise error.of_run(opened[0].stopped_for_room(continued_by)) from error.__cause__
    except Exception as error:
        reason = store_out_of_room(error)
        if reason is None or not opened:  # a run that could not be opened said so itself
            raise
        raise out_of_room(opened[0].tracking_uri, reason, opened[0].stopped_for_room(continued_by)) from error


def fresh_run_name() -> str:
    """A run name of MLflow's kind (``bald-calf-86``) drawn from the operating system's randomness.

    MLflow draws its names from Python's global generator, which every job seeds: the jobs of a multirun,
    one process, were named alike (seed 2 of one configuration as seed 3 of the one before). The global
    generator is left as it was.
    """
    from mlflow.utils.name_utils import _generate_random_name

    state = random.getstate()
    random.seed()
    try:
        return _generate_random_name()
    finally:
        random.setstate(state)


class TrackedRun:
    """A handle on one run in an MLflow store."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.client = open_client(tracking_uri)
        # set by ``reopen``: the status a failed resume puts back, until the resumed fit starts training
        self.status_before_resume: str | None = None
        self.resumed_training = False
        self.ended_as: str | None = None  # the status ``end`` recorded; None while RUNNING in the store

    @classmethod
    def create(
        cls,
        tracking_uri: str,
        experiment_name: str,
        artifact_location: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> TrackedRun:
        with server_access(tracking_uri), room_for(tracking_uri, "no run was created, and nothing trained"):
            return cls._create(tracking_uri, experiment_name, artifact_location, run_name, tags)

    @classmethod
    def _create(
        cls,
        tracking_uri: str,
        experiment_name: str,
        artifact_location: str | None,
        run_name: str | None,
        tags: Mapping[str, str] | None,
    ) -> TrackedRun:
        client = open_client(tracking_uri)
        check_recordable(tracking_uri)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            location = None
            # a tracking server decides where artifacts go; a local store keeps them beside its database
            if artifact_location and tracking_uri.startswith(("sqlite:", "file:")):
                location = (
                    Path(artifact_location).resolve().as_uri() if "://" not in artifact_location else artifact_location
                )
            experiment_id = _create_experiment(client, experiment_name, location)
        elif experiment.lifecycle_stage == "deleted":
            raise deleted_experiment(
                tracking_uri,
                experiment_name,
                experiment.experiment_id,
                ", or record into another with experiment_name=NEW_NAME",
            )
        else:
            experiment_id = experiment.experiment_id
            close_orphaned_runs(client, experiment_id)
        run = client.create_run(
            experiment_id, run_name=run_name or fresh_run_name(), tags={**process_tags(), **(tags or {})}
        )
        return cls(tracking_uri, run.info.run_id)

    @classmethod
    def reopen(cls, tracking_uri: str, run_id: str) -> TrackedRun:
        """Continue an existing run (resume): back to RUNNING, owned by this process (its ``hostname`` and
        ``explab.pid`` tags name it, as they name a new run's; the host it ran on before, when another, is kept
        in ``explab.resumed_from_host``)."""
        run = cls(tracking_uri, run_id)
        recorded = run.client.get_run(run_id)
        info = recorded.info
        if info.status == "RUNNING":
            close_orphaned_runs(run.client, info.experiment_id)
            info = run.client.get_run(run_id).info
            if info.status == "RUNNING":
                raise UsageError(still_running(run.client, run_id))
        run.status_before_resume = info.status
        check_recordable(tracking_uri)
        # another member's run, which this account may only read
        with server_access(tracking_uri), room_for(tracking_uri, f"run {run_id} is as it was, and nothing trained"):
            run.client.update_run(run_id, status="RUNNING")
        # hostname and pid together say which process answers for the run: left naming the host it started on,
        # a run resumed elsewhere would be closed as an orphan there, where that pid is not alive
        tags = process_tags()
        ran_on = recorded.data.tags.get("hostname")
        if ran_on and ran_on != tags["hostname"]:
            tags[RESUMED_FROM_HOST_TAG] = ran_on
        run.set_tags(tags)
        return run

    def training_resumed(self) -> None:
        """The reopened run trains on: from here a failure ends it as it would end a new run, and how it had
        ended before (``KILLED: TrialPruned: pruned after epoch 2``) moves from ``explab.status_reason`` to
        ``explab.resumed_after``, so a run that now finishes carries no reason of an ending it is past."""
        self.resumed_training = True
        tags = self.client.get_run(self.run_id).data.tags
        if STATUS_REASON_TAG in tags:
            self.set_tags({RESUMED_AFTER_TAG: f"{self.status_before_resume}: {tags[STATUS_REASON_TAG]}"[:5000]})
        for stale in (STATUS_REASON_TAG, RESUME_FAILED_TAG):
            if stale in tags:
                self.client.delete_tag(self.run_id, stale)

    @property
    def experiment_id(self) -> str:
        return self.client.get_run(self.run_id).info.experiment_id

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=items[start : start + PARAMS_PER_CALL])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_text(self, text: str, artifact_file: str) -> None:
        """``text`` as the artifact ``artifact_file``, which MLflow writes to the temporary folder first.

        Raises:
            StagingError: the temporary folder has no room for it.
        """
        with room_to_stage(f"The run's {artifact_file}"):
            self.client.log_text(self.run_id, text, artifact_file)

    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)
        self.ended_as = status

    def stopped_for_room(self, continued_by: Callable[[str], str] | None) -> str:
        """What became of this run when its store ran out of room as it recorded, as a clause."""
        if self.ended_as is not None:
            told = f"run {self.run_id} stopped and is recorded {self.ended_as}"
        else:
            told = f"run {self.run_id} stopped, and could not be recorded as ended: {SHOWS_RUNNING_UNTIL_CLOSED}"
        return f"{told}; once there is room, {continued_by(self.run_id)}" if continued_by else told

    def load_text(self, artifact_file: str) -> str:
        """A text artifact of this run (config, overrides, vocabulary), read without MLflow's progress bar: a
        small file read at start-up would print a bar on the console each time."""
        import mlflow.artifacts

        with no_download_bars():
            return mlflow.artifacts.load_text(f"{self.client.get_run(self.run_id).info.artifact_uri}/{artifact_file}")

    def ui_link(self) -> str:
        """This run's page in the MLflow UI that shows its store: its tracking server's own, or the one
        ``ui_command`` serves."""
        from explab.tracking.ui import LOCAL_UI, run_link, server_ui

        return run_link(server_ui(self.tracking_uri) or LOCAL_UI, self.experiment_id, self.run_id)

    def where_to_view(self) -> str:
        """How to open this run's page, as a log line says it: the link, after the command that serves the
        store (``make ui, then``) for a store no tracking server serves."""
        from explab.tracking.ui import server_ui, ui_command

        link = self.ui_link()
        return link if server_ui(self.tracking_uri) else f"{ui_command(self.tracking_uri)}, then {link}"

    def end(self, error: BaseException | None) -> None:
        """End the run with the status ``error`` deserves (FINISHED for None), recording a failure's error."""
        if error is None:
            self.finish("FINISHED")
            return
        status = run_status_for(error)
        reason_tag = STATUS_REASON_TAG
        if self.status_before_resume is not None and not self.resumed_training:
            # the resume failed before training on: the run is as it was, and keeps its status
            status, reason_tag = self.status_before_resume, RESUME_FAILED_TAG
        pruned = is_trial_pruned(error)  # the search stopped it on purpose: an outcome, not an error
        try:
            reason = stop_described(error) or f"{type(error).__name__}: {error}"
            self.set_tags({reason_tag: reason[:5000]})
            if reason_tag == STATUS_REASON_TAG and not (pruned or isinstance(error, Stopped)):
                self.log_text("".join(traceback.format_exception(error)), "error.txt")
        except Exception as logging_error:  # the store itself may be the problem; the status still matters
            log.warning("could not record the error in MLflow: %s", logging_error)
        try:
            self.finish(status)
        except Exception as finishing_error:
            no_room = store_out_of_room(finishing_error)
            if no_room is None:
                raise
            # the error that ended the run is the one to report, not this one raised while handling it
            log.error(
                "MLflow run %s could not be recorded as ended (%s): %s",
                self.run_id,
                no_room,
                SHOWS_RUNNING_UNTIL_CLOSED,
            )
            return
        level = logging.INFO if pruned else logging.ERROR if status == "FAILED" else logging.WARNING
        # the first line only: the console prints the whole error next, and the tag above keeps it
        log.log(level, "MLflow run %s ended %s: %s", self.run_id, status, stop_described(error) or first_line(error))


def _create_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """Create an experiment, or take the one another process created a moment ago under the same name."""
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as err:
        existing = client.get_experiment_by_name(name)
        if existing is None:
            raise
        log.debug("experiment %s was created concurrently (%s)", name, err)
        return existing.experiment_id
