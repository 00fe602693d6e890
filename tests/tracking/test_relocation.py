"""A SQLite store moved with its folder finds its artifacts beside it, and new runs keep theirs there."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import mlflow
import pytest

from explab.tracking import TrackedRun
from explab.tracking.store import open_client


def _store_with_runs(root: Path) -> tuple[str, str]:
    """A store in ``root/mlruns`` (as explab-train makes it) with a run that logged a file, and a run of an
    experiment whose artifacts live in ``root/shared`` on purpose; returns both run ids."""
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    ids = []
    for experiment, artifacts in (("digits_cnn", root / "mlruns" / "artifacts"), ("elsewhere", root / "shared")):
        run = TrackedRun.create(uri, experiment, artifact_location=str(artifacts))
        run.client.log_text(run.run_id, "its notes", "notes/ran.txt")
        run.client.set_terminated(run.run_id, "FINISHED")
        ids.append(run.run_id)
    return ids[0], ids[1]


def test_a_moved_store_points_to_its_own_artifacts_and_keeps_new_ones_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its records named the folder it left: downloads failed, and new runs wrote there again."""
    moved, elsewhere = _store_with_runs(tmp_path / "project")
    shutil.move(tmp_path / "project", tmp_path / "renamed")
    (tmp_path / "project" / "shared").mkdir(parents=True)  # the other experiment's folder stays where it was
    shutil.move(tmp_path / "renamed" / "shared" / elsewhere, tmp_path / "project" / "shared" / elsewhere)
    uri = f"sqlite:///{tmp_path}/renamed/mlruns/mlflow.db"
    client = open_client(uri)
    here = (tmp_path / "renamed" / "mlruns" / "artifacts").as_uri()
    assert client.get_run(moved).info.artifact_uri == f"{here}/{moved}/artifacts"
    assert client.get_experiment_by_name("digits_cnn").artifact_location == here
    notes = mlflow.artifacts.download_artifacts(run_id=moved, artifact_path="notes/ran.txt", tracking_uri=uri)
    assert Path(notes).read_text() == "its notes"
    assert client.get_run(elsewhere).info.artifact_uri.startswith((tmp_path / "project" / "shared").as_uri())
    assert (
        f"the MLflow store {tmp_path}/renamed/mlruns/mlflow.db was moved from {tmp_path}/project/mlruns/artifacts: "
        f"its records now point to the artifacts beside it, in {tmp_path}/renamed/mlruns/artifacts (1 experiment, "
        "1 run, 0 logged models, 0 model versions)"
    ) in caplog.text
    later = TrackedRun.create(uri, "digits_cnn", artifact_location=str(tmp_path / "renamed" / "mlruns" / "artifacts"))
    later.client.log_text(later.run_id, "new notes", "notes/ran.txt")
    assert (tmp_path / "renamed" / "mlruns" / "artifacts" / later.run_id / "artifacts" / "notes" / "ran.txt").is_file()
    assert not (tmp_path / "project" / "mlruns").exists(), "nothing is written where the store was"


def test_a_copy_whose_original_is_in_place_keeps_its_records(tmp_path: Path) -> None:
    run_id, _ = _store_with_runs(tmp_path / "project")
    shutil.copytree(tmp_path / "project", tmp_path / "backup")
    client = open_client(f"sqlite:///{tmp_path}/backup/mlruns/mlflow.db")
    assert client.get_run(run_id).info.artifact_uri.startswith((tmp_path / "project").as_uri())


def test_a_run_whose_artifacts_are_gone_is_named_by_eval_and_reproduce(compose_cfg, store: Path) -> None:
    """A store copied without its artifacts/: eval ended in MLflow's "Failed to download artifacts" traceback,
    and reproduce= said the run "was not recorded by explab-train"."""
    from explab.checkpoints import CheckpointError
    from explab.errors import UsageError
    from explab.eval import evaluate
    from explab.reproduce import recorded_overrides
    from tests.conftest import tracking_uri_for

    uri = tracking_uri_for(store)
    run = TrackedRun.create(uri, "digits_cnn", artifact_location=str(store / "artifacts"))
    run.client.log_text(run.run_id, "[]", "config/overrides.yaml")
    run.client.set_tag(run.run_id, "explab.best_checkpoint", "checkpoints/epoch_000.ckpt")
    run.client.set_terminated(run.run_id, "FINISHED")
    shutil.rmtree(store / "artifacts")
    gone = (
        f"run {run.run_id}'s artifacts are not where its store records them: {store}/artifacts/{run.run_id}/artifacts "
        "is gone (moved or removed apart from the store, or the store was copied without its artifacts/ folder)"
    )
    with pytest.raises(CheckpointError, match=re.escape(gone)) as refused:
        evaluate(compose_cfg(f"run_id={run.run_id}", "trainer=cpu", config_name="eval"))
    assert str(refused.value).endswith("they hold the checkpoint it logged, checkpoints/epoch_000.ckpt")
    with pytest.raises(UsageError, match=re.escape(gone)):
        recorded_overrides(uri, run.run_id)
