"""A temporary folder with too little room for a model (a small node-local /tmp, a container's): the command
names the folder and TMPDIR in one line, and the trained run is not lost."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.conftest import run_cli, runs_in

pytestmark = pytest.mark.slow


def test_a_temporary_folder_without_room_for_the_model_is_named_and_resume_logs_the_model(small_disk, tmp_path) -> None:
    """The weights were written after the whole fit and test, to fail with torch's "unexpected pos 64 vs 0";
    loading the model, MLflow said "please ensure that the path is correct" of a model that was there."""
    temporary, resize = small_disk
    resize(160)  # room for the run's configs and plots, not for its model's weights
    full_tmp = {"TMPDIR": str(temporary)}
    store = [f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs"]

    done = run_cli("explab-train", "trainer.max_epochs=2", *store, cwd=tmp_path, env=full_tmp)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    said = re.search(
        rf"Error: The run's MLflow model could not be staged in the temporary folder {temporary} \(No space left on "
        r"device\): run (\w+) stopped and is recorded FAILED; once there is room, explab-train resume=\1 continues "
        r"it from its last checkpoint\. Free space there, or give the command a temporary folder with room: TMPDIR=",
        done.stderr,
    )
    assert said, done.stderr[-3000:]
    run_id = said.group(1)
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert (run.info.run_id, run.info.status) == (run_id, "FAILED")
    assert run.data.metrics["test/acc"] > 0.5, "the run's fit and test are recorded"

    resumed = run_cli("explab-train", f"resume={run_id}", *store, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch 0" not in resumed.stdout + resumed.stderr, "nothing is trained again"
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.info.status == "FINISHED"

    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8), dtype=np.float32))
    predict = ["explab-predict", f"model_uri=runs:/{run_id}/model", f"input={tmp_path}/x.npy", *store]
    refused = run_cli(*predict, f"output={tmp_path}/refused.csv", cwd=tmp_path, env=full_tmp)
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert refused.stderr.strip().splitlines()[-1] == (
        f"Error: The model runs:/{run_id}/model could not be staged in the temporary folder {temporary} (No space "
        "left on device). Free space there, or give the command a temporary folder with room: TMPDIR=FOLDER"
    )
    predicted = run_cli(*predict, f"output={tmp_path}/predicted.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert len((tmp_path / "predicted.csv").read_text().splitlines()) == 3


def test_a_sweep_whose_summary_finds_no_room_in_the_temporary_folder_names_it_and_ends_well(
    small_disk, tmp_path
) -> None:
    """The warning said only "could not summarise the sweep in MLflow: [Errno 28] No space left on device"."""
    temporary, resize = small_disk
    resize(64)  # room for the trials' configs, not for the summary's plots
    done = run_cli(
        "explab-train",
        "-m",
        "hparams_search=digits_optuna",
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=1",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        cwd=tmp_path,
        env={"TMPDIR": str(temporary)},
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0 and "2/2 trials finished" in said, said[-3000:]
    assert (
        "could not summarise the sweep in MLflow: The sweep's summary (its trials table and plots) could not be "
        f"staged in the temporary folder {temporary} (No space left on device). Free space there, or give the "
        "command a temporary folder with room: TMPDIR=FOLDER"
    ) in said, said[-3000:]
