"""A configuration too big for the machine's memory: named with the sizes to lower, its run FAILED with torch's
traceback kept, and in a sweep one failed trial among the others. A sweep's failed and pruned trials leave
nothing of their model in memory for the trials after them. Any other error goes through as it was raised."""

from __future__ import annotations

import itertools
from pathlib import Path

import optuna
import pytest
import torch
from hydra.utils import instantiate
from mlflow import MlflowClient
from optuna.trial import TrialState

from explab.errors import raised_while
from explab.memory import OutOfMemory, memory_named, out_of_memory
from explab.sweep.storage import open_storage
from explab.sweep.telling import ERROR_ATTR
from explab.train import train
from tests.conftest import ROOT, run_cli, runs_in, tracking_uri_for

# a 2,000,000 x 2,000,000 layer: 14,901.2 GiB of float32 weights, which any host refuses at once
TOO_WIDE = "model.backbone.width=2000000"


def test_a_tensor_the_host_refuses_is_named_with_its_size_and_what_to_lower() -> None:
    with pytest.raises(OutOfMemory) as named, memory_named():
        torch.empty(10**13)  # 4e13 bytes of float32
    said = str(named.value)
    assert said.startswith("out of memory: this machine refused torch the 37,252.9 GiB of one tensor. "), said
    assert "data.batch_size" in said and "model.backbone" in said and "nvidia-smi" not in said, "no GPU here"
    assert "DefaultCPUAllocator" in str(named.value.__cause__), "torch's own error is kept for the run's record"


def test_a_model_whose_constructor_the_host_refuses_is_named_through_hydras_error() -> None:
    """Hydra raises its InstantiationException from the constructor's error: the allocation is behind it."""
    wide = {"_target_": "torch.nn.Linear", "in_features": 2_000_000, "out_features": 2_000_000}
    with pytest.raises(Exception) as raised:
        instantiate(wide)
    named = out_of_memory(raised.value)
    assert named is not None and "refused torch the 14,901.2 GiB of one tensor" in str(named)


def test_other_errors_are_not_taken_for_memory() -> None:
    assert out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (64x10 and 12x3)")) is None
    with pytest.raises(ValueError, match="depth"), memory_named():
        raise ValueError("depth must be at least 1")


def test_a_test_explab_eval_cannot_fit_names_the_batches_to_lower_and_logs_nothing(compose_cfg, store: Path) -> None:
    """On a smaller or shared GPU a run's test may not fit where its training did; explab-eval's user cannot
    resize the model, only the test's batches. (A CPU host refuses no batch of these small data sets, so the
    test that cannot fit is one of a lab's backbone that averages over more test-time copies than it trained
    with: its weights are the checkpoint's, and its test asks for a tensor no host holds.)"""
    from explab.eval import evaluate
    from explab.train import train

    augmented = "{_target_: tests.support.models.TestTimeAugmented, num_outputs: 1, inputs: 10, copies: 1}"
    train(
        compose_cfg(
            "experiment=diabetes_mlp", "~model.backbone", f"+model.backbone={augmented}", "trainer.max_epochs=1"
        )
    )
    [run] = runs_in(store, "diabetes_mlp")
    tested = [key for key in run.data.metrics if key.startswith("test/")]
    copies = "config_overrides=['model.backbone.copies=1099511627776']"
    with pytest.raises(OutOfMemory) as named:
        evaluate(compose_cfg(f"run_id={run.info.run_id}", copies, config_name="eval"))
    said = str(named.value)
    assert said.startswith("out of memory: this machine refused torch the "), said
    assert said.endswith(
        """Test in smaller batches (it tests in batches of 512): add 'config_overrides=["data.eval_batch_size=128"]'"""
    ), said
    [after] = runs_in(store, "diabetes_mlp")
    assert [key for key in after.data.metrics if key.startswith("test/")] == tested, "no test was logged"
    history = MlflowClient(tracking_uri_for(store)).get_metric_history(run.info.run_id, "test/mse")
    assert len(history) == 1, "the run's own test only"


@pytest.mark.slow
def test_a_run_too_big_for_memory_fails_in_one_line_with_its_record_kept(tmp_path: Path) -> None:
    done = run_cli(
        "explab-train", "experiment=diabetes_mlp", TOO_WIDE, f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Error: out of memory: this machine refused torch the 14,901.2 GiB of one tensor" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    (run,) = runs_in(tmp_path / "mlruns", "diabetes_mlp")
    assert run.info.status == "FAILED"
    assert run.data.tags["explab.status_reason"].startswith("OutOfMemory: out of memory: this machine refused torch")
    error_file = Path(run.info.artifact_uri.removeprefix("file://")) / "error.txt"
    assert "DefaultCPUAllocator: can't allocate memory" in error_file.read_text(), "torch's traceback is kept"


@pytest.mark.slow
def test_a_sweep_trial_too_big_for_memory_fails_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """A search over model sizes meets one this machine cannot hold: that trial fails saying so, the rest train."""
    done = run_cli(
        "explab-train", "-m", "experiment=diabetes_mlp", "hparams_search=optuna", "hydra/sweeper/sampler=grid",
        "model.backbone.width=choice(16,2000000)", "hydra.sweeper.n_trials=2", "trainer.max_epochs=2",
        f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    open_storage.cache_clear()
    storage = open_storage(f"journal:///{tmp_path}/mlruns/optuna/diabetes_mlp.journal")
    study = optuna.load_study(study_name="diabetes_mlp_optuna", storage=storage)
    by_width = {t.params["model.backbone.width"]: t for t in study.trials}
    assert by_width[16].state == TrialState.COMPLETE
    assert by_width[2000000].state == TrialState.FAIL
    assert by_width[2000000].user_attrs[ERROR_ATTR].startswith("out of memory: this machine refused torch")
    statuses = sorted(
        r.info.status for r in runs_in(tmp_path / "mlruns", "diabetes_mlp") if r.data.tags.get("optuna.trial_number")
    )
    assert statuses == ["FAILED", "FINISHED"], statuses


def test_an_error_that_is_its_own_cause_is_looked_through_once() -> None:
    """``raise error from error`` makes an error its own cause: looking through its chain for an allocation
    went round it for ever."""
    error = ValueError("a schedule stepped past its end")
    error.__cause__ = error
    assert list(itertools.islice(raised_while(error), 3)) == [error]
    assert out_of_memory(error) is None


def test_a_value_error_in_a_fit_fails_its_run_and_ends_the_command(tmp_path: Path) -> None:
    """A ValueError raised inside the fit (a lab's callback, a one-cycle schedule stepped past its end) was
    raised again from itself, and the command hung at full CPU while looking for an allocation behind it,
    its run RUNNING."""
    done = run_cli(
        "explab-train", *FAIL_AT_EPOCH_1, "+callbacks.fail.error=ValueError", "trainer.max_epochs=2",
        f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and "ValueError: failing on purpose at epoch 1" in done.stderr, done.stderr[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert run.info.status == "FAILED"


def test_a_value_error_in_a_fit_is_raised_as_itself_not_from_itself(compose_cfg, store: Path) -> None:
    cfg = compose_cfg(*FAIL_AT_EPOCH_1, "+callbacks.fail.error=ValueError", "trainer.enable_progress_bar=false")
    with pytest.raises(ValueError, match="failing on purpose") as raised:
        train(cfg)
    assert raised.value.__cause__ is not raised.value


FAIL_AT_EPOCH_1 = ("+callbacks.fail._target_=tests.support.callbacks.FailAtEpoch", "+callbacks.fail.epoch=1")


def live_models(tmp_path: Path) -> tuple[str, Path]:
    """The override that counts, at each fit's start, the earlier fits' models still in memory; and its file."""
    path = tmp_path / "live.txt"
    return f"+callbacks.live._target_=tests.support.callbacks.CountLiveModules +callbacks.live.path={path}", path


@pytest.mark.slow
def test_a_sweeps_failed_trials_leave_nothing_of_their_model_in_memory(tmp_path: Path) -> None:
    """What a failed or pruned trial raised was kept with its traceback, whose frames held the trial's model,
    optimiser state and data, for the rest of the sweep. Its message is all that is kept."""
    count, live = live_models(tmp_path)
    done = run_cli(
        "explab-train", "-m", "hparams_search=digits_optuna", "hydra.sweeper.n_trials=3", "trainer.max_epochs=2",
        *FAIL_AT_EPOCH_1, *count.split(), f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 1 and "3 trials failed in a row" in done.stderr, done.stderr[-3000:]
    assert live.read_text().splitlines() == ["0 0", "0 1", "0 2"], "each trial's model is gone before the next"


@pytest.mark.slow
def test_a_multiruns_failed_jobs_leave_nothing_of_their_model_in_memory_but_the_first_bugs(tmp_path: Path) -> None:
    """The first job that fails with a bug is raised with its traceback at the end, as Hydra does: its frames
    are kept, and no other job's."""
    count, live = live_models(tmp_path)
    done = run_cli(
        "explab-train", "-m", "seed=1,2,3", "trainer.max_epochs=2", *FAIL_AT_EPOCH_1, *count.split(),
        f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path, env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 1 and "3 of 3 jobs of this multirun failed" in done.stderr, done.stderr[-3000:]
    assert "Traceback" in done.stderr and "failing on purpose at epoch 1" in done.stderr
    assert live.read_text().splitlines() == ["0 0", "1 1", "1 2"], "the first job's model alone stays"
