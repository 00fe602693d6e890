"""``explab-sweep status [STUDY]``: where a sweep stands, from any shell, while its workers run anywhere.

The study is read from ``--storage`` or, by default, found among the journals under the project's
``mlruns/optuna/`` (where the ``hparams_search`` configs keep them), whichever folder the shell is in.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from explab.config import project_root
from explab.errors import ExplabError, UsageError, first_line
from explab.sweep.heartbeat import HEARTBEAT_ATTR, RELEASED_ATTR, WORKER_ATTR, gone_from_this_host
from explab.sweep.storage import JOURNAL_PREFIX, load_study, storage_file
from explab.sweep.summary import describe_progress


def study_names(storage_url: str) -> list[str]:
    """The names of the studies the storage at ``storage_url`` holds."""
    import optuna

    from explab.sweep.storage import open_storage

    storage = open_storage(storage_url)
    assert storage is not None  # a URL was given
    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


def studies_in(mlruns_dir: Path) -> dict[str, list[str]]:
    """Each journal under ``mlruns_dir/optuna`` (as a storage URL) and the studies it holds."""
    journals = sorted((mlruns_dir / "optuna").glob("*.journal"))
    return {url: study_names(url) for url in (f"{JOURNAL_PREFIX}{journal.resolve()}" for journal in journals)}


def find_storage(study_name: str, mlruns_dir: Path) -> str:
    """The journal under ``mlruns_dir/optuna`` that holds ``study_name``."""
    journals = studies_in(mlruns_dir)
    holding = [url for url, names in journals.items() if study_name in names]
    if len(holding) == 1:
        return holding[0]
    where = f"{mlruns_dir / 'optuna'} ({len(journals)} journals)"
    if not holding:
        known = sorted(name for names in journals.values() for name in names)
        there = f"; it holds {', '.join(known)}" if known else ""
        raise UsageError(
            f"no study '{study_name}' in {where}{there}: give the sweep's store with --mlruns-dir FOLDER (its "
            "paths.mlruns_dir, when paths.root_dir or paths.mlruns_dir was moved) or its storage with --storage URL"
        )
    raise UsageError(f"study '{study_name}' is in several journals of {where}: choose one with --storage {holding[0]}")


def every_study(storage_url: str | None, mlruns_dir: Path) -> list[tuple[str, str]]:
    """(study, storage URL) of every study in ``storage_url``, or else in the journals under ``mlruns_dir``."""
    if storage_url:
        _check_exists(storage_url)
        try:
            names = study_names(storage_url)
        except Exception as error:  # a URL that does not parse, a server that does not answer
            raise UsageError(f"cannot read studies from {storage_url}: {first_line(error)}") from None
        if not names:
            raise UsageError(f"no study in {storage_url}")
        return [(name, storage_url) for name in names]
    found = [(name, url) for url, names in studies_in(mlruns_dir).items() for name in names]
    if not found:
        raise UsageError(
            f"no study in {mlruns_dir / 'optuna'}: give the sweeps' store with --mlruns-dir FOLDER or their "
            "storage with --storage URL"
        )
    return found


def _check_exists(storage_url: str, prefix: str = "") -> None:
    """A journal or SQLite file that is not there is named: opening it would create an empty one."""
    path = storage_file(storage_url)
    if path is not None and not path.is_file():
        kind = "journal" if storage_url.startswith(JOURNAL_PREFIX) else "database"
        raise UsageError(f"{prefix}there is no {kind} at {path}")


# what becomes of a RUNNING trial that nothing trains
CONTINUED_BY = "the next free worker, or the sweep's command run again, continues it from its last checkpoint"


def status_lines(study_name: str, storage_url: str) -> list[str]:
    """The study's progress, then one line per RUNNING trial: its worker and last heartbeat, or, where nothing
    trains it (its job was stopped, its worker on this host is gone), that and what continues it."""
    from optuna.trial import TrialState

    _check_exists(storage_url, f"no study '{study_name}': ")
    try:
        study = load_study(study_name, storage_url)
    except KeyError:
        raise UsageError(f"no study '{study_name}' in {storage_url}") from None
    lines = [describe_progress(study)]
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR, "?")
        since = _last_heartbeat(trial.user_attrs.get(HEARTBEAT_ATTR), worker, now)
        if trial.user_attrs.get(RELEASED_ATTR) is True:
            # RUNNING in Optuna, yet nothing trains it: its job was stopped (preempted, requeued, scancel)
            waiting = f"released by {worker} when its job was stopped"
        elif gone_from_this_host(trial):
            # its worker was killed here (out of memory, kill -9): nothing beats for it any more
            waiting = f"cut off: its worker {worker} is gone ({since})"
        else:
            lines.append(f"  trial {trial.number} running on {worker}, {since}: {trial.params}")
            continue
        lines.append(f"  trial {trial.number} {waiting}: {CONTINUED_BY}: {trial.params}")
    return lines


def _last_heartbeat(beat: float | None, worker: str, now: float) -> str:
    """How long ago ``worker`` last beat, by this host's clock; a beat stamped later than now was written by a
    host whose clock runs ahead, which is said instead of a negative age."""
    if beat is None:
        return "no heartbeat yet"
    age = now - float(beat)
    if age < -1:
        host = worker.rpartition(":")[0] or worker
        return f"last heartbeat just now by {host}'s clock, which runs at least {-age:.0f} s ahead of this host's"
    return f"last heartbeat {max(age, 0):.0f} s ago"


def main(argv: list[str] | None = None) -> None:
    """Console script ``explab-sweep``."""
    # the module's first line, without its reStructuredText quotes
    parser = argparse.ArgumentParser(prog="explab-sweep", description=__doc__.splitlines()[0].replace("``", ""))
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="counts of complete, running, pruned and failed trials; best value")
    status.add_argument(
        "study", nargs="?", help="the study name (hydra.sweeper.study_name); without it, every study found"
    )
    status.add_argument("--storage", help="the study's storage URL (default: the journal under mlruns/optuna)")
    status.add_argument(
        "--mlruns-dir",
        type=Path,
        default=project_root() / "mlruns",  # where explab-train's sweeps keep their journals, from any folder
        help="where to look for journals (default: the project's mlruns/)",
    )
    args = parser.parse_args(argv)
    try:
        if args.study is None:
            for name, storage in every_study(args.storage, args.mlruns_dir):
                print("\n".join(status_lines(name, storage)))
            return
        storage = args.storage or find_storage(args.study, args.mlruns_dir)
        print("\n".join(status_lines(args.study, storage)))
    except ExplabError as error:  # a study not found, or a storage that does not answer
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
