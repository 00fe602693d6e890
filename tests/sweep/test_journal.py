"""A study's journal keeps whole records only: a write cut short by a full disk never leaves it unreadable."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from explab.sweep.journal import WholeRecordsJournal
from tests.conftest import run_cli


def _study(path: Path) -> optuna.Study:
    """The study "s" in the journal at ``path``, created on first use."""
    storage = optuna.storages.JournalStorage(WholeRecordsJournal(str(path)))
    if any(summary.study_name == "s" for summary in optuna.get_all_study_summaries(storage)):
        return optuna.load_study(study_name="s", storage=storage)
    return optuna.create_study(study_name="s", storage=storage)


def test_a_torn_last_record_is_cut_off_as_the_journal_opens_and_the_study_goes_on(tmp_path, caplog) -> None:
    journal = tmp_path / "study.journal"
    _study(journal).add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    whole = journal.read_bytes()
    torn = b'{"op_code":4,"worker_id":"cut sh'  # what a full disk left of an append
    journal.write_bytes(whole + torn)

    with caplog.at_level(logging.WARNING):
        study = _study(journal)
    assert journal.read_bytes() == whole
    assert (
        f"the study journal {journal} ended in a record cut short" in caplog.text
        and f"{len(torn)} bytes" in caplog.text
    )
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=2.0))
    assert [t.value for t in _study(journal).trials] == [1.0, 2.0]


def test_an_append_the_disk_has_no_room_for_leaves_the_journal_as_it_was(tmp_path) -> None:
    journal = tmp_path / "study.journal"
    _study(journal).add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    before = journal.read_bytes()
    # a file size limit just past the journal: the next append fails part-way, as on a full disk (EFBIG)
    script = f"""
import resource, signal, optuna
from explab.sweep.journal import WholeRecordsJournal
from tests.conftest import run_cli
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
storage = optuna.storages.JournalStorage(WholeRecordsJournal({str(journal)!r}))
study = optuna.load_study(study_name="s", storage=storage)
resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 100}, {len(before) + 100}))
big = {{"note": "x" * 5000}}
study.add_trial(optuna.trial.create_trial(params={{}}, distributions={{}}, value=2.0, user_attrs=big))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "File too large" in done.stderr, done.stderr[-2000:]
    assert journal.read_bytes() == before
    assert [t.value for t in _study(journal).trials] == [1.0]


@pytest.mark.parametrize("content", [b"", b'{"op_code":0}\n'])
def test_a_whole_journal_is_left_as_it_is(tmp_path, content: bytes) -> None:
    journal = tmp_path / "study.journal"
    journal.write_bytes(content)
    WholeRecordsJournal(str(journal))
    assert journal.read_bytes() == content


def test_a_trial_whose_report_the_journal_has_no_room_for_fails_in_one_line(tmp_path) -> None:
    """The pruner's report is the job's own write to the study: it ended in Optuna's traceback."""
    journal = tmp_path / "study.journal"
    _study(journal).ask()
    script = f"""
import resource, signal
from omegaconf import OmegaConf
from explab.sweep.storage import trial_from_config
from explab.sweep.trial import TrialJob
node = {{"study_name": "s", "number": 0, "storage": "journal:///{journal}", "objective": ["val/acc"]}}
job = TrialJob(OmegaConf.create({{"optuna_trial": node}}))
trial = trial_from_config(job.optuna_trial)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({journal.stat().st_size + 10},) * 2)
with job.study_writes():
    trial.report(0.5, 1)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, done.stdout
    assert done.stderr.strip().splitlines()[-1] == (
        f"explab.sweep.storage.StudyStorageError: The study's storage journal:///{journal} could not take a write "
        "(File too large): trial 0 stopped. Free space there (or raise your quota), then run the sweep's command again"
    ), done.stderr[-2000:]


def test_a_colleagues_journal_this_account_may_only_read_is_reported(tmp_path, another_account) -> None:
    """Opening the journal took Optuna's lock, a file made beside it: ``explab-sweep status`` of a colleague's
    study in a shared folder failed with "Permission denied ... digits.journal.lock"."""
    folder = tmp_path / "optuna"
    folder.mkdir()
    journal = folder / "digits.journal"
    study = _study(journal)
    for value in (0.5, 0.75):
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=value))
    subprocess.run(["chown", "-R", "nobody", str(folder)], check=True)
    subprocess.run(["chmod", "-R", "go-w", str(folder)], check=True)
    status = run_cli(
        "explab-sweep", "status", "s", "--storage", f"journal:///{journal}", cwd=tmp_path, account=another_account
    )
    assert status.returncode == 0, status.stderr[-2000:]
    assert "study 's': 2 complete, 0 pruned, 0 failed, 0 running" in status.stdout, status.stdout[-2000:]
    assert sorted(p.name for p in folder.iterdir()) == ["digits.journal"]
