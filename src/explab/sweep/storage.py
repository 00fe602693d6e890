"""Open Optuna storages by URL, and find a job's trial from the ``optuna_trial`` node its sweeper set.

URLs: ``journal:///relative.log`` or ``journal:////absolute/path.log`` (a journal file: many processes on
one host), any SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``: many hosts), or none (in memory).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from explab.errors import ExplabError, first_line
from explab.tracking.store import missing_driver, shown_url

if TYPE_CHECKING:
    import optuna
    from omegaconf import DictConfig

JOURNAL_PREFIX = "journal:///"


class StudyStorageError(ExplabError):
    """A study's storage that cannot be opened (a database that does not answer); the message names it and
    the fix."""


# Studies opened by a sweeper in this process: in-process jobs report to the very same object.
_LIVE_STUDIES: dict[tuple[str, str | None], optuna.Study] = {}


def is_journal(url: str) -> bool:
    return url.startswith(JOURNAL_PREFIX) or url.endswith((".journal", ".log"))


def storage_file(url: str) -> Path | None:
    """The file a journal or SQLite URL keeps its studies in; None for a database server."""
    if is_journal(url):
        return Path(url.removeprefix(JOURNAL_PREFIX))
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def absolute_storage(url: str | None) -> str | None:
    """``url`` with a relative journal or SQLite file made absolute, read from the working folder: the sweep's
    jobs open the study from theirs, which ``hydra.job.chdir=true`` makes their own output folders, and
    workers submitted elsewhere (SLURM) may start in another."""
    path = storage_file(url) if url else None
    if url is None or path is None or path.is_absolute():
        return url
    scheme = "sqlite:///" if url.startswith("sqlite:///") else JOURNAL_PREFIX
    return f"{scheme}{path.resolve()}"


@functools.cache
def open_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """One storage object per URL and process; a journal or SQLite file is created with its folder."""
    import optuna

    if not url:
        return None
    path = storage_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if is_journal(url):
        from explab.sweep.journal import WholeRecordsJournal

        return optuna.storages.JournalStorage(WholeRecordsJournal(str(path)))
    if "://" not in url:  # SQLAlchemy's "Could not parse SQLAlchemy URL" named neither what it takes nor the fix
        raise StudyStorageError(
            f"the study's storage '{url}' is neither a journal file nor a database URL: give a file ending .journal "
            f"(journal:///{url}.journal), an SQLite file (sqlite:///{url}.db) or a server's URL (postgresql://...)"
        )
    return _rdb_storage(url)


def _rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Workers that start together on a fresh database race to create Optuna's tables; the loser retries
    once the winner's schema is in place."""
    import time

    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except ImportError as error:
            raise StudyStorageError(
                f"the study's storage {missing_driver(url, error)}, or give a journal file "
                "(journal:///path/to/study.journal), which needs none"
            ) from None
        except (IntegrityError, OperationalError, ProgrammingError) as error:
            if attempt == attempts - 1:
                raise StudyStorageError(
                    f"the study's storage {shown_url(url)} cannot be opened: {first_line(error)}. Start the "
                    "database or correct the URL, or give another hydra.sweeper.storage (a journal file, "
                    "journal:///path/to/study.journal, needs no server)"
                ) from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def remember_study(study: optuna.Study, url: str | None) -> None:
    _LIVE_STUDIES[(study.study_name, url)] = study


def load_study(study_name: str, url: str | None) -> optuna.Study:
    """The study as this process's sweeper opened it, else from its storage with the pruner its sweep
    recorded (``explab.sweep.pruner``)."""
    import optuna

    live = _LIVE_STUDIES.get((study_name, url))
    if live is not None:
        return live
    if not url:
        raise ValueError(
            f"study '{study_name}' lives in memory in another process; give the sweep a storage "
            "(hydra.sweeper.storage=journal:///optuna.log) so its jobs can report to it"
        )
    from explab.sweep.pruner import recorded_pruner

    storage = open_storage(url)
    assert storage is not None  # a URL was given
    study = optuna.load_study(study_name=study_name, storage=storage)
    study.pruner = recorded_pruner(study)  # Optuna's storage keeps none: its default would prune instead
    return study


def trial_from_config(optuna_trial: DictConfig) -> optuna.Trial:
    """The ``optuna.Trial`` a job belongs to, from ``cfg.optuna_trial`` (study_name, storage, number).

    Optuna has no public call that reopens a RUNNING trial by its number, so the trial id comes from the
    storage: the same lookup Optuna's own ``study.tell(number)`` makes.
    """
    import optuna

    study = load_study(optuna_trial.study_name, optuna_trial.get("storage"))
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, int(optuna_trial.number))
    return optuna.Trial(study, trial_id)
