"""Which worker holds a RUNNING trial, and whether it is still there to finish it.

A worker marks each trial it runs with itself (``host:pid``) and, while the trial's job runs, a heartbeat
every ``seconds``. On its own host a worker's death is seen at once (its pid is gone); on another host it
is inferred when the heartbeat is four beats late by this host's clock, then confirmed by watching the
trial for two more beats: a host whose clock runs behind writes beats that look old, yet they keep coming.
A worker stopped by its scheduler marks its trial released, so the next worker continues it without
waiting. A free worker claims a trial whose worker is gone (``claim_cut_off_trial``); a pool whose workers
are all gone fails what they left RUNNING. A worker that was only stalled, and finds its trial claimed when
it wakes, ends at once (``stand_down``): one trial is never trained by two workers into one run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from explab.tracking.orphans import pid_scope, pid_tells, process_alive
from explab.utils.logging import get_logger

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial, Trial

log = get_logger(__name__)

WORKER_ATTR = "explab.worker"
WORKER_SCOPE_ATTR = "explab.worker_pid_scope"  # where the worker's pid can be looked up (``pid_scope``)
HEARTBEAT_ATTR = "explab.heartbeat"
RELEASED_ATTR = "explab.released"
MISSED_BEATS = 4
WATCHED_BEATS = 2  # a beat whose write hit a storage hiccup is missed once; two in a row are a worker gone
CLAIM_SETTLE_SECONDS = 1.0  # two workers adopting one trial at once: the later claim wins, the other backs off
CUT_OFFS_ATTR = "explab.cut_offs"  # how many times the trial's worker was found gone (a release is not counted)
# a trial cut off more often than this is failed, not continued again: what kills its workers is the trial itself
# (a host it runs out of memory, a library it crashes), and each new worker it takes would die the same way
MAX_CUT_OFFS = 3


@contextlib.contextmanager
def heartbeat(trial: Trial, seconds: float) -> Iterator[None]:
    """Beat on ``trial`` every ``seconds`` while the block runs.

    Before each beat the worker checks that the trial is still its own. A worker stalled long enough to be
    taken for gone (a suspended SLURM job, a paused VM, a hung mount) finds it marked by the worker that took
    it over, and ends at once with its job, as the others took it to have ended (``stand_down``).
    """
    stop = threading.Event()
    holder = trial.user_attrs.get(WORKER_ATTR)

    def beat() -> None:
        while True:
            try:
                now_held_by = trial.study._storage.get_trial(trial._trial_id).user_attrs.get(WORKER_ATTR)
                if holder is not None and now_held_by != holder:
                    stand_down(trial.number, holder, str(now_held_by))
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            except Exception as error:  # a storage hiccup costs one beat, never the trial
                log.debug("heartbeat of trial %d not written: %s", trial.number, error)
            if stop.wait(seconds):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def stand_down(number: int, holder: str, taker: str) -> None:
    """End this worker and the processes it started (a trial's DDP ranks) with SIGKILL: the trial and its
    MLflow run now belong to ``taker``, so nothing here may write to them again, not even a last.ckpt or a
    run's end. A pool replaces a worker killed so; a command on its own exits 137."""
    log.error(
        "trial %d was taken over by worker %s while this worker (%s) was stalled and its heartbeat stopped: this "
        "worker ends at once, leaving the trial and its run to it",
        number, taker, holder,
    )  # fmt: skip
    for handler in logging.getLogger().handlers:
        handler.flush()
    for pid in [*_descendants(os.getpid()), os.getpid()]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (Linux's ``/proc``; none where it cannot be read)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += [int(child), *_descendants(int(child))]
    return found


def mark_as_mine(trial: Trial, worker: str) -> None:
    """Mark ``trial`` as run by ``worker`` (``host:pid`` of this process), with where its pid is looked up."""
    trial.set_user_attr(WORKER_SCOPE_ATTR, pid_scope())
    trial.set_user_attr(WORKER_ATTR, worker)


def worker_of(trial: FrozenTrial) -> tuple[str, str]:
    """(host, pid) of the worker that marked ``trial``; empty strings where none did."""
    host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
    return host, pid


def worker_gone(trial: FrozenTrial, seconds: float) -> bool:
    """Whether nobody is running ``trial`` (RUNNING in the study) any more.

    A worker marks a trial it asked for at once; one still unmarked a beat (``seconds``) after it started was
    asked by a worker killed in between, and nobody will mark it.
    """
    if trial.user_attrs.get(RELEASED_ATTR) is True:
        return True
    if WORKER_ATTR not in trial.user_attrs:
        return time.time() - _last_seen(trial) > seconds
    if _seen_on_this_host(trial):
        return not process_alive(int(worker_of(trial)[1]))
    return time.time() - _last_seen(trial) > MISSED_BEATS * seconds


def _last_seen(trial: FrozenTrial) -> float:
    """When ``trial``'s worker last showed it was there, by the clock of the host that wrote it: its last
    heartbeat, or before any, the trial's start (now where the storage recorded none)."""
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    return float(trial.user_attrs.get(HEARTBEAT_ATTR, started))


def claim_cut_off_trial(study: optuna.Study, worker: str, seconds: float) -> Trial | None:
    """A RUNNING trial whose worker is gone, now claimed by ``worker``, with the times its workers were cut off
    in ``CUT_OFFS_ATTR``; None when there is none.

    Claims are attributes, not locks: after writing its claim a worker waits ``CLAIM_SETTLE_SECONDS`` and
    reads the trial again; of two workers that claimed it together, only the later claim stands.
    """
    from optuna.trial import Trial, TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for frozen in _without_signs_of_life(study, [t for t in running if worker_gone(t, seconds)], seconds):
        previous = frozen.user_attrs.get(WORKER_ATTR)
        released = frozen.user_attrs.get(RELEASED_ATTR) is True  # its job was stopped, and said so: not a cut-off
        cut_offs = int(frozen.user_attrs.get(CUT_OFFS_ATTR, 0)) + (not released and previous is not None)
        trial = Trial(study, frozen._trial_id)
        mark_as_mine(trial, worker)
        trial.set_user_attr(RELEASED_ATTR, False)
        time.sleep(CLAIM_SETTLE_SECONDS)
        if study._storage.get_trial(frozen._trial_id).user_attrs.get(WORKER_ATTR) != worker:
            continue
        trial.set_user_attr(CUT_OFFS_ATTR, cut_offs)
        if released:
            log.warning("trial %d was released (worker %s stopped): continuing it here", frozen.number, previous)
        elif cut_offs <= MAX_CUT_OFFS:
            log.warning("trial %d was cut off (worker %s is gone): continuing it here", frozen.number, previous)
        else:  # the sweeper fails it (``MAX_CUT_OFFS``)
            log.warning("trial %d was cut off (worker %s is gone), %d times now", frozen.number, previous, cut_offs)
        return trial
    return None


def _seen_on_this_host(trial: FrozenTrial) -> bool:
    """Whether ``trial``'s worker runs on this host, where its pid tells at once whether it lives: not in
    another PID namespace of it (a container), whose pids name other processes here."""
    host, pid = worker_of(trial)
    return pid.isdigit() and pid_tells(host, trial.user_attrs.get(WORKER_SCOPE_ATTR))


def gone_from_this_host(trial: FrozenTrial) -> bool:
    """Whether ``trial``'s worker ran where this process looks up pids and its pid is gone: known at once,
    without waiting on heartbeats."""
    return _seen_on_this_host(trial) and not process_alive(int(worker_of(trial)[1]))


def _signs_of_life(trial: FrozenTrial) -> tuple[object, object]:
    return trial.user_attrs.get(WORKER_ATTR), trial.user_attrs.get(HEARTBEAT_ATTR)


def _without_signs_of_life(study: optuna.Study, suspects: list[FrozenTrial], seconds: float) -> list[FrozenTrial]:
    """Of ``suspects`` (trials ``worker_gone`` judged), those still without a beat or a mark after
    ``WATCHED_BEATS`` more beats.

    Only a verdict read off another host's clock is watched: a released trial, and one whose pid is on this
    host, are judged without it. A trial that beats meanwhile, is marked, or ends has a worker; one seen
    beating is said to run on a host whose clock is behind, so the lab can set it right.
    """
    # the signs as they are now: a trial read without a deep copy is the storage's own, updated in place
    watched = {
        t._trial_id: _signs_of_life(t)
        for t in suspects
        if t.user_attrs.get(RELEASED_ATTR) is not True and not _seen_on_this_host(t)
    }
    deadline = time.monotonic() + WATCHED_BEATS * seconds + CLAIM_SETTLE_SECONDS
    for trial in suspects:
        if trial._trial_id in watched:
            _say_it_is_watched(trial, WATCHED_BEATS * seconds)
    alive: set[int] = set()
    while watched.keys() - alive and time.monotonic() < deadline:
        time.sleep(min(1.0, seconds / 2))
        for key in watched.keys() - alive:
            now = study._storage.get_trial(key)
            if now.state.is_finished() or _signs_of_life(now) != watched[key]:
                alive.add(key)
                _say_why_it_looked_gone(now, seconds)
    return [t for t in suspects if t._trial_id not in alive]


_ANNOUNCED: set[tuple[int, object]] = set()  # (trial id, its worker's mark) whose watch this process announced


def _say_it_is_watched(trial: FrozenTrial, watch: float) -> None:
    """What the sweep waits for while it watches a trial that looks cut off, once per trial and worker: a
    trial of a host whose clock runs behind is watched again every time it is looked at."""
    mark = trial.user_attrs.get(WORKER_ATTR)
    if (trial._trial_id, mark) in _ANNOUNCED:
        return
    _ANNOUNCED.add((trial._trial_id, mark))
    ago = time.time() - _last_seen(trial)
    if mark is None:
        log.warning(
            "trial %d was asked %.0f s ago and no worker has marked it as its own: the worker that asked it stopped "
            "first (as a sweep whose records could not take a write does). Watching it %.0f s more (two "
            "beats of hydra.sweeper.heartbeat_seconds); unless a worker marks it meanwhile, it is continued here",
            trial.number, ago, watch,
        )  # fmt: skip
        return
    log.warning(
        "trial %d's worker %s last beat %.0f s ago, by this host's clock: watching it %.0f s more (two beats of "
        "hydra.sweeper.heartbeat_seconds); unless it beats meanwhile, it is continued here",
        trial.number, mark, ago, watch,
    )  # fmt: skip


def _say_why_it_looked_gone(trial: FrozenTrial, seconds: float) -> None:
    """A beat seen while watching was written just now by its host's clock: one that still reads old on this
    host's clock says that host's clock is behind; a fresh one, that its worker stalled and came back."""
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    if beat is None or trial.state.is_finished():
        return
    host, pid = worker_of(trial)
    lag = time.time() - float(beat)
    if lag <= seconds:
        log.info("trial %d's worker %s:%s beats again after a pause: the trial goes on there", trial.number, host, pid)
        return
    log.warning(
        "trial %d looked cut off, but its worker %s:%s is still beating: %s's clock is about %.0f s behind this "
        "host's (%s). The trial goes on there; keep the hosts' clocks in step (chrony or ntpd)",
        trial.number, host, pid, host, lag, socket.gethostname(),
    )  # fmt: skip


def fail_trials_of_dead_workers(study: optuna.Study) -> list[FrozenTrial]:
    """Fail the trials a killed worker of this host left RUNNING, once no worker is left to continue them;
    returns them."""
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not gone_from_this_host(trial):
            continue
        pid = worker_of(trial)[1]
        study.tell(trial.number, state=TrialState.FAIL)
        log.warning("trial %d was left RUNNING by a dead worker (pid %s): marked FAIL", trial.number, pid)
        failed.append(trial)
    return failed


def unmarked_running(study: optuna.Study) -> bool:
    """Whether a RUNNING trial carries no worker's mark yet: asked a moment ago, or by a worker killed before it
    marked it (``worker_gone`` tells which once a beat has passed)."""
    from optuna.trial import TrialState

    return any(WORKER_ATTR not in t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
