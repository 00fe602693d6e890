"""Runs left RUNNING by a process that was SIGKILLed (or lost its machine) are closed, not left to lie."""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from explab.tracking.store import shown_url
from explab.utils.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlflow import MlflowClient
    from mlflow.entities import Run

log = get_logger(__name__)

PID_TAG = "explab.pid"
PID_SCOPE_TAG = "explab.pid_scope"  # the boot and PID namespace in which PID_TAG names the run's process


@functools.cache
def pid_scope() -> str:
    """This host's boot and this process's PID namespace: where a pid names one process. A container with a
    PID namespace of its own (Docker, ``apptainer --pid``) may share the host's name, yet its pids are not
    this one's; after a reboot the same pid is another process. Empty where Linux's ``/proc`` is absent."""
    boot = namespace = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    with contextlib.suppress(OSError):
        namespace = os.readlink("/proc/self/ns/pid")
    return f"{boot} {namespace}".strip()


def process_tags(host: str | None = None, pid: int | str | None = None, scope: str | None = None) -> dict[str, str]:
    """The tags that name the process answering for a run (this one by default): together they let a later
    start tell whether it is gone (``close_orphaned_runs``)."""
    return {
        "hostname": host or socket.gethostname(),
        PID_TAG: str(pid or os.getpid()),
        PID_SCOPE_TAG: scope if scope is not None else pid_scope(),
    }


def pid_tells(host: str | None, scope: str | None) -> bool:
    """Whether a pid recorded with ``host`` and ``scope`` can be looked up from this process: the same host,
    boot and PID namespace. A record without a scope, from before explab kept one, is taken as this one's."""
    return host == socket.gethostname() and (not scope or scope == pid_scope())


def from_an_earlier_boot(host: str | None, scope: str | None) -> bool:
    """Whether a pid recorded on this host belongs to a boot before this one: its process is gone for sure."""
    boot = pid_scope().split(" ")[0]
    if not scope or not boot or host != socket.gethostname():
        return False
    return scope.split(" ")[0] != boot


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_killed(client: MlflowClient, run_id: str, reason: str, status: str = "KILLED") -> None:
    """End a run its process left RUNNING as KILLED (or ``status``), with ``reason`` in
    ``explab.status_reason``."""
    client.set_tag(run_id, "explab.status_reason", reason)
    client.set_terminated(run_id, status)


def end_left_running(client: MlflowClient, run: Run, reason: str) -> None:
    """End ``run`` KILLED with ``reason`` when it is still RUNNING though its process is known to be gone (a
    cut-off trial's worker, a requeued job's earlier attempt): ``resume=`` would refuse it as live."""
    if run.info.status != "RUNNING":
        return
    end_killed(client, run.info.run_id, reason)
    log.warning("MLflow run %s: %s; marked KILLED", run.info.run_id, reason)


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
        reason = why_gone(run.data.tags)
        if reason is None:
            continue
        end_killed(client, run.info.run_id, reason)
        closed.append(run.info.run_id)
        log.warning(
            "MLflow run %s was left RUNNING by process %s, which is gone: marked KILLED",
            run.info.run_id,
            run.data.tags.get(PID_TAG, ""),
        )
    return closed


def why_gone(tags: Mapping[str, str]) -> str | None:
    """Why the process a RUNNING run's tags name is gone for sure, as a clause; None when it is alive, or
    where nobody here can tell: another host, or another PID namespace of this one (a container)."""
    host, pid, scope = tags.get("hostname"), tags.get(PID_TAG, ""), tags.get(PID_SCOPE_TAG)
    if from_an_earlier_boot(host, scope):
        return f"{host} restarted since process {pid} ran this run"
    if pid.isdigit() and pid_tells(host, scope) and not process_alive(int(pid)):
        return f"process {pid} on {host} ended without closing the run (SIGKILL, OOM or a lost machine)"
    return None


def still_running(client: MlflowClient, run_id: str) -> str:
    """Why run ``run_id``, RUNNING after ``close_orphaned_runs``, cannot be taken over, and what to do: its
    process lives on this host, or it runs on another host, where only that host can tell."""
    tags = client.get_run(run_id).data.tags
    pid, host = tags.get(PID_TAG, "?"), tags.get("hostname")
    if pid_tells(host, tags.get(PID_SCOPE_TAG)):
        return f"run {run_id} is RUNNING in process {pid} on this host: stop it (kill {pid}) or let it end first"
    if host == socket.gethostname():
        where, lost = "on this host, in another PID namespace (a container)", "that container ended"
    else:
        where, lost = f"on {host or 'another host'}", "that machine was lost"
    return (
        f"run {run_id} is RUNNING in process {pid} {where}: stop it there or let it end first. "
        f"If {lost} with the process, end the run yourself: {shlex.quote(sys.executable)} -c "
        f"\"import mlflow; mlflow.MlflowClient('{shown_url(client.tracking_uri)}').set_terminated('{run_id}', "
        "'KILLED')\""
    )
