"""Runs left RUNNING by a process that was SIGKILLed (or lost its machine) are closed, not left to lie."""

from __future__ import annotations

import os
import shlex
import socket
import sys
from typing import TYPE_CHECKING

from explab.tracking.store import shown_url
from explab.utils.logging import get_logger

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = get_logger(__name__)

PID_TAG = "explab.pid"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_killed(client: MlflowClient, run_id: str, reason: str) -> None:
    """End a run its process left RUNNING as KILLED, with ``reason`` in ``explab.status_reason``."""
    client.set_tag(run_id, "explab.status_reason", reason)
    client.set_terminated(run_id, "KILLED")


def close_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED every RUNNING run of this host whose process is gone; return their ids.

    Runs of other hosts are left alone: from here nobody can tell whether their process still lives.
    """
    host = socket.gethostname()
    closed = []
    runs = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.hostname = '{host}'", max_results=500
    )
    for run in runs:
        pid = run.data.tags.get(PID_TAG, "")
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        end_killed(
            client,
            run.info.run_id,
            f"process {pid} on {host} ended without closing the run (SIGKILL, OOM or a lost machine)",
        )
        closed.append(run.info.run_id)
        log.warning("MLflow run %s was left RUNNING by process %s, which is gone: marked KILLED", run.info.run_id, pid)
    return closed


def still_running(client: MlflowClient, run_id: str) -> str:
    """Why run ``run_id``, RUNNING after ``close_orphaned_runs``, cannot be taken over, and what to do: its
    process lives on this host, or it runs on another host, where only that host can tell."""
    tags = client.get_run(run_id).data.tags
    pid, host = tags.get(PID_TAG, "?"), tags.get("hostname")
    if host == socket.gethostname():
        return f"run {run_id} is RUNNING in process {pid} on this host: stop it (kill {pid}) or let it end first"
    return (
        f"run {run_id} is RUNNING in process {pid} on {host or 'another host'}: stop it there or let it end first. "
        f"If that machine was lost with the process, end the run yourself: {shlex.quote(sys.executable)} -c "
        f"\"import mlflow; mlflow.MlflowClient('{shown_url(client.tracking_uri)}').set_terminated('{run_id}', "
        "'KILLED')\""
    )
