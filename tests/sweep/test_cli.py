"""``explab-sweep status``: a study's progress read from its storage, as a researcher's shell sees it."""

from __future__ import annotations

import re
import time

import optuna
import pytest
from optuna.trial import TrialState

from explab.sweep.cli import main
from explab.sweep.continuation import RUN_ATTR
from explab.sweep.heartbeat import HEARTBEAT_ATTR, RELEASED_ATTR, WORKER_ATTR
from explab.sweep.storage import open_storage


@pytest.fixture
def journal(tmp_path):
    """A study of four trials in the default place (mlruns/optuna/), one of each state."""
    open_storage.cache_clear()
    path = tmp_path / "mlruns" / "optuna" / "digits_cnn.journal"
    study = optuna.create_study(study_name="digits_cnn_optuna", storage=open_storage(f"journal:///{path}"))
    for value in (0.5, 0.9):
        run = {RUN_ATTR: f"run{value}"}
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=value, user_attrs=run))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
    running = study.ask()
    running.set_user_attr(WORKER_ATTR, "node7:123")
    running.set_user_attr(HEARTBEAT_ATTR, 0.0)
    stopped = study.ask()  # its SLURM job was stopped: RUNNING in Optuna, waiting for a worker to continue it
    stopped.set_user_attr(WORKER_ATTR, "node8:456")
    stopped.set_user_attr(RELEASED_ATTR, True)
    return path


def test_status_counts_trials_and_names_the_best_and_who_runs_what(journal, tmp_path, capsys) -> None:
    main(["status", "digits_cnn_optuna", "--mlruns-dir", str(tmp_path / "mlruns")])
    out = capsys.readouterr().out
    assert out.startswith("study 'digits_cnn_optuna': 2 complete, 1 pruned, 0 failed, 2 running")
    assert "best value 0.5, trial 0 (MLflow run run0.5)" in out, "the study minimises; its run is named"
    assert "trial 3 running on node7:123, last heartbeat" in out
    assert "trial 4 released by node8:456 when its job was stopped: the next free worker, or the sweep's" in out
    assert "trial 4 running" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "elsewhere_optuna"], "no study 'elsewhere_optuna' in"),
        (
            ["status", "digits_cnn_optuan"],
            "(1 journals); it holds digits_cnn_optuna: give the sweep's store with --mlruns-dir",
        ),
        (["status", "digits_cnn_optuna", "--storage", "journal:////nowhere/x.journal"], "there is no journal at"),
    ],
)
def test_status_of_a_study_it_cannot_find_says_where_it_looked(journal, tmp_path, capsys, args, message) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--mlruns-dir", str(tmp_path / "mlruns")])
    assert exit_.value.code == 1 and message in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def test_status_without_a_study_lists_every_study_it_finds(journal, tmp_path, capsys) -> None:
    """The study's name was needed, and a researcher who forgot it had to read the journals to find it."""
    other = tmp_path / "mlruns" / "optuna" / "mnist_cnn.journal"
    optuna.create_study(study_name="mnist_cnn_optuna", storage=open_storage(f"journal:///{other}"))
    main(["status", "--mlruns-dir", str(tmp_path / "mlruns")])
    lines = capsys.readouterr().out.splitlines()
    studies = [line for line in lines if line.startswith("study ")]
    assert studies[0].startswith("study 'digits_cnn_optuna': 2 complete") and len(studies) == 2, lines
    assert (
        studies[1] == "study 'mnist_cnn_optuna': 0 complete, 0 pruned, 0 failed, 0 running (0 of the complete "
        "are repeats); no trial completed yet"
    )
    main(["status", "--storage", f"journal:///{other}"])
    assert capsys.readouterr().out.startswith("study 'mnist_cnn_optuna': 0 complete"), "only that storage's"


@pytest.mark.parametrize("study", [[], ["digits_cnn_optuna"]])
def test_status_of_a_storage_file_that_is_not_there_creates_none(tmp_path, capsys, study) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["status", *study, "--storage", f"sqlite:///{tmp_path}/nowhere/optuna.db"])
    assert exit_.value.code == 1 and f"there is no database at {tmp_path}/nowhere/optuna.db" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def test_status_looks_in_the_projects_mlruns_from_any_folder(tmp_path, monkeypatch, capsys) -> None:
    """explab-train keeps a sweep's journal under the project's mlruns/, wherever it was started."""
    from explab.config import project_root

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["status", "no_such_study"])
    assert f"in {project_root() / 'mlruns' / 'optuna'} (" in capsys.readouterr().err


def test_help_says_what_the_command_does_in_plain_text(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    said = capsys.readouterr().out
    assert "explab-sweep status [STUDY]: where a sweep stands" in said and "``" not in said, said


def test_status_that_finds_no_study_or_two_says_what_to_give(journal, tmp_path, capsys) -> None:
    def refusal(*args: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(["status", *args])
        assert exit_.value.code == 1
        return capsys.readouterr().err

    empty = tmp_path / "empty"
    assert f"no study in {empty / 'optuna'}: give the sweeps' store with --mlruns-dir" in refusal(
        "--mlruns-dir", str(empty)
    )
    emptied = f"journal:///{tmp_path}/emptied.journal"
    optuna.create_study(study_name="gone", storage=open_storage(emptied))
    optuna.delete_study(study_name="gone", storage=open_storage(emptied))
    assert f"no study in {emptied}" in refusal("--storage", emptied)
    assert "cannot read studies from postgresql://127.0.0.1:1/x: " in refusal("--storage", "postgresql://127.0.0.1:1/x")
    copy = tmp_path / "mlruns" / "optuna" / "copy.journal"
    optuna.create_study(study_name="digits_cnn_optuna", storage=open_storage(f"journal:///{copy}"))
    said = refusal("digits_cnn_optuna", "--mlruns-dir", str(tmp_path / "mlruns"))
    assert "study 'digits_cnn_optuna' is in several journals of " in said and "(2 journals): choose one with" in said


def test_status_of_a_worker_whose_clock_runs_ahead_says_so_instead_of_a_negative_age(tmp_path, capsys) -> None:
    """A host whose clock runs two minutes ahead stamps its beats in this host's future: status said "last
    heartbeat -120 s ago"."""
    journal = f"journal:///{tmp_path}/ahead.journal"
    study = optuna.create_study(study_name="ahead", storage=open_storage(journal))
    trial = study.ask()
    trial.set_user_attr(WORKER_ATTR, "node9:77")
    trial.set_user_attr(HEARTBEAT_ATTR, time.time() + 120)
    main(["status", "ahead", "--storage", journal])
    said = capsys.readouterr().out
    ran = "trial 0 running on node9:77, last heartbeat just now by node9's clock, which runs at least 1[12][0-9] s"
    assert re.search(f"{ran} ahead of this host's: ", said) and "-1" not in said, said
