"""explab-eval: test a run's checkpoint again, on this machine, and log the result into that run."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from explab.checkpoints import CheckpointError
from explab.errors import ExplabError, UsageError
from explab.eval import evaluate
from explab.train import train
from tests.conftest import run_cli, runs_in, tracking_uri_for
from tests.support.formats import write_mnist


def _only_run_id(store: Path) -> str:
    [run] = runs_in(store, "digits_cnn")
    return str(run.info.run_id)


def test_eval_logs_into_the_same_run(compose_cfg, store: Path) -> None:
    trained = train(compose_cfg("trainer.max_epochs=1", "trainer.enable_progress_bar=false"))
    run_id = _only_run_id(store)
    cfg = compose_cfg(f"run_id={run_id}", "trainer=cpu", config_name="eval")
    assert cfg.trainer.accelerator == "cpu" and not cfg.trainer.enable_progress_bar, "eval.yaml wins over the group"
    evaluated = evaluate(cfg)
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"])
    history = MlflowClient(tracking_uri_for(store)).get_metric_history(run_id, "test/acc")
    assert len(history) == 2, "eval adds a test/acc point to the training run"
    assert runs_in(store, "digits_cnn")[0].info.status == "FINISHED"


@pytest.mark.parametrize("another_split", ["data.test_fraction=0.3", "data.seed=3"])
def test_a_test_of_another_split_is_not_logged_into_the_run(compose_cfg, store: Path, caplog, another_split) -> None:
    """``config_overrides`` that cut another test split (its fraction, or its seed) measured another set, and
    explab-eval logged that into the run as its ``test/acc``, where it stood for the run's own test. A change
    that leaves the set as it was (the batches it is tested in) is still logged."""
    train(compose_cfg("trainer.max_epochs=1", "trainer.enable_progress_bar=false"))
    run_id = _only_run_id(store)

    def tests_logged(change: str) -> int:
        evaluate(compose_cfg(f"run_id={run_id}", f"config_overrides=['{change}']", config_name="eval"))
        return len(MlflowClient(tracking_uri_for(store)).get_metric_history(run_id, "test/acc"))

    assert tests_logged(another_split) == 1, "only the training run's own test"
    # the same data cut otherwise: the samples tested may have been trained on, which the numbers hide
    assert (
        f"the metrics are not logged to MLflow run {run_id}: its test split is cut otherwise from the same data"
    ) in caplog.text
    assert "part of what was tested now may be samples the model trained on, and these numbers overstate it" in (
        caplog.text
    )
    assert tests_logged("data.eval_batch_size=7") == 2
    # other data altogether (the files were replaced): not a split of what the model trained on
    MlflowClient(tracking_uri_for(store)).set_tag(run_id, "data.fingerprint", "0" * 16)
    assert tests_logged(another_split) == 2
    assert "its test set is not the one tested now (data.test_fingerprint " in caplog.text
    assert "then, " in caplog.text and "now: the data changed, or config_overrides cut" in caplog.text


def test_another_checkpoint_of_a_tested_run_is_not_logged_as_its_test(compose_cfg, store: Path, caplog) -> None:
    """``explab-eval ckpt_path=.../last.ckpt`` of a finished run logged the last epoch's test into it at the same
    step as the fit's own: the run's ``test/acc`` became the last checkpoint's (0.9815 became 0.9889), and
    testing checkpoints until one scored best would have chosen it by the test set. Its own is still logged."""
    train(compose_cfg("trainer.max_epochs=3", "trainer.enable_progress_bar=false"))
    run_id = _only_run_id(store)
    client = MlflowClient(tracking_uri_for(store))
    checkpoints = Path(client.get_run(run_id).data.params["paths.output_dir"]) / "checkpoints"
    own = client.get_run(run_id).data.tags["explab.best_checkpoint"].rsplit("/", 1)[-1]
    assert own != "last.ckpt"
    evaluate(compose_cfg(f"ckpt_path={checkpoints / 'last.ckpt'}", config_name="eval"))
    assert len(client.get_metric_history(run_id, "test/acc")) == 1, "only the fit's own test"
    assert (
        f"not logged to MLflow run {run_id}: its test/ metrics are those of {own}, the checkpoint its fit tested, "
        f"and this tested last.ckpt. explab-eval run_id={run_id} tests its own"
    ) in caplog.text
    evaluate(compose_cfg(f"ckpt_path={checkpoints / own}", config_name="eval"))
    assert len(client.get_metric_history(run_id, "test/acc")) == 2
    # nor is a checkpoint another run saved, given with this run's id
    train(compose_cfg("trainer.max_epochs=3", "trainer.enable_progress_bar=false", "seed=7"))
    [other] = [r.info.run_id for r in runs_in(store, "digits_cnn") if r.info.run_id != run_id]
    elsewhere = Path(client.get_run(other).data.params["paths.output_dir"]) / "checkpoints" / "last.ckpt"
    evaluate(compose_cfg(f"run_id={run_id}", f"ckpt_path={elsewhere}", config_name="eval"))
    assert len(client.get_metric_history(run_id, "test/acc")) == 2
    assert f"last.ckpt was saved by MLflow run {other}, and its test stands for that run" in caplog.text


def test_a_killed_run_is_pointed_to_its_last_checkpoint(compose_cfg, store: Path) -> None:
    """A run logs its best checkpoint as it ends; one killed before has only last.ckpt, which eval can test."""
    train(compose_cfg("trainer.max_epochs=1", "trainer.enable_progress_bar=false"))
    run_id = _only_run_id(store)
    client = MlflowClient(tracking_uri_for(store))
    client.delete_tag(run_id, "explab.best_checkpoint")  # as a run killed in its fit leaves it
    client.set_terminated(run_id, "KILLED")
    last = Path(client.get_run(run_id).data.params["paths.output_dir"]) / "checkpoints" / "last.ckpt"
    with pytest.raises(
        CheckpointError, match=f"run {run_id} ended KILLED before it logged its best checkpoint"
    ) as said:
        evaluate(compose_cfg(f"run_id={run_id}", "trainer=cpu", config_name="eval"))
    assert f"explab-train resume={run_id}, or test that state now with explab-eval ckpt_path={last}" in str(said.value)
    assert evaluate(compose_cfg(f"ckpt_path={last}", "trainer=cpu", config_name="eval"))["test/acc"] > 0.5
    assert len(client.get_metric_history(run_id, "test/acc")) == 2, "logged into the run the checkpoint belongs to"


def test_a_killed_runs_last_checkpoint_is_named_where_it_is_now_when_its_project_moved(
    compose_cfg, store: Path, tmp_path: Path
) -> None:
    # the job's folder is tmp_path/out: its paths.log_dir is tmp_path, as a project's is its logs/
    train(compose_cfg("trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"paths.log_dir={tmp_path}"))
    run_id = _only_run_id(store)
    client = MlflowClient(tracking_uri_for(store))
    client.delete_tag(run_id, "explab.best_checkpoint")  # as a run killed in its fit leaves it
    client.set_terminated(run_id, "KILLED")
    (tmp_path / "moved").mkdir()
    shutil.move(tmp_path / "out", tmp_path / "moved" / "out")
    with pytest.raises(CheckpointError, match=f"run {run_id} ended KILLED before it logged its best") as said:
        evaluate(compose_cfg(f"run_id={run_id}", "trainer=cpu", f"paths.log_dir={tmp_path}/moved", config_name="eval"))
    assert f"explab-eval ckpt_path={tmp_path}/moved/out/checkpoints/last.ckpt" in str(said.value)


def test_a_logged_checkpoint_cut_short_in_the_store_is_named_as_the_runs(compose_cfg, store: Path) -> None:
    """It was named by the temporary folder it was downloaded to, with that folder's other checkpoints to
    resume from, and torch's paragraph of advice."""
    train(compose_cfg("trainer.max_epochs=1", "trainer.enable_progress_bar=false"))
    run_id = _only_run_id(store)
    run = MlflowClient(tracking_uri_for(store)).get_run(run_id)
    logged = Path(run.info.artifact_uri.removeprefix("file://")) / run.data.tags["explab.best_checkpoint"]
    logged.write_bytes(logged.read_bytes()[:-100])
    last = Path(run.data.params["paths.output_dir"]) / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError) as refused:
        evaluate(compose_cfg(f"run_id={run_id}", "trainer=cpu", config_name="eval"))
    assert str(refused.value) == (
        f"the checkpoint run {run_id} logged ({logged.name}) cannot be read from its store (PytorchStreamReader "
        "failed reading zip archive: failed finding central directory): its copy there was cut short or damaged. "
        f"Restore the store's artifacts from a backup, test the state the run last saved with explab-eval "
        f"ckpt_path={last}, or train the run again with explab-train reproduce={run_id}"
    )
    assert runs_in(store, "digits_cnn")[0].info.status == "FINISHED"


@pytest.mark.parametrize("owner", ["alive", "gone"])
def test_a_running_run_is_named_still_training_while_its_process_lives(compose_cfg, store: Path, owner: str) -> None:
    """A RUNNING run has logged no best checkpoint yet. While the process its tags name lives, it is still
    training, not a run that ended (resume= would refuse it as live); once that process is gone, it was left
    RUNNING. Either way eval names the last checkpoint it can test now, and logs nothing into the run."""
    train(compose_cfg("trainer.max_epochs=1", "trainer.enable_progress_bar=false"))
    run_id = _only_run_id(store)
    client = MlflowClient(tracking_uri_for(store))
    client.delete_tag(run_id, "explab.best_checkpoint")  # as a run in its fit has it
    last = Path(client.get_run(run_id).data.params["paths.output_dir"]) / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(["sleep", "60"])
    try:
        if owner == "gone":
            process.kill()
            process.wait()
        client.set_tag(run_id, "explab.pid", str(process.pid))  # the run's process is that one of this host
        client.update_run(run_id, status="RUNNING")
        with pytest.raises(CheckpointError) as said:
            evaluate(compose_cfg(f"run_id={run_id}", "trainer=cpu", config_name="eval"))
    finally:
        process.kill()
        process.wait()
    if owner == "alive":
        assert str(said.value) == (
            f"run {run_id} is RUNNING in process {process.pid} on this host: stop it (kill {process.pid}) or let it "
            f"end first. It logs its best checkpoint as it ends, for explab-eval run_id={run_id} to test then; "
            f"test the state it last saved now with explab-eval ckpt_path={last}"
        )
    else:
        assert str(said.value).startswith(
            f"run {run_id} was left RUNNING before it logged its best checkpoint, as process {process.pid} on "
            f"{socket.gethostname()} ended without closing the run (SIGKILL, OOM or a lost machine); its training "
            f"stopped at {last}. Continue the run to its end with explab-train resume={run_id}"
        ), said.value
    assert client.get_run(run_id).info.status == "RUNNING", "eval leaves the run to its process"
    assert len(client.get_metric_history(run_id, "test/acc")) == 1, "and logs nothing into it"


@pytest.mark.slow
def test_a_compiled_runs_checkpoints_evaluate_and_resume_without_compiling(tmp_path: Path) -> None:
    """torch.compile names the backbone's weights ``backbone._orig_mod.x``: explab-eval of a compiled run, and a
    resume with ``model.compile=false``, failed to load them."""
    where = [f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs", "log_model=false"]
    short = ["+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"]
    done = run_cli("explab-train", "model.compile=true", "trainer.max_epochs=1", *short, *where, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = _only_run_id(tmp_path / "mlruns")
    done = run_cli("explab-eval", f"run_id={run_id}", *where[:2], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_cli(
        "explab-train", f"resume={run_id}", "model.compile=false", "trainer.max_epochs=2", *short, *where, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(MlflowClient(tracking_uri_for(tmp_path / "mlruns")).get_metric_history(run_id, "val/acc")) == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            '["data.bach_size=3"]',
            r"the run's config has no data.bach_size. Did you mean: data.batch_size, data.eval_batch_size\? "
            r"To add a new key on purpose, write \+data.bach_size=",
        ),
        ('["data.eval_batch_size=0"]', r"data.eval_batch_size=0 is not valid: .* must be null or an integer >= 1"),
        ('["data.eval_batch_size"]', r"item 'data.eval_batch_size' is not key=value; quote each item"),
        # Hydra's "Cannot instantiate config of type str", and torch's traceback of a size mismatch
        ('["model=lenet"]', r"item 'model=lenet' names the whole section model .* a config group option cannot"),
        (
            '["model.backbone.channels=[8,16]"]',
            r"weights do not fit the network built here \(shapes differ: backbone.features.0.bias \[32\] in the "
            r"checkpoint, \[8\] in the model, .*\): a config_overrides item changed the network",
        ),
    ],
    ids=["typo", "out-of-range", "no-value", "group", "network-size"],
)
def test_config_overrides_are_checked_like_a_training_config(compose_cfg, store: Path, overrides, message) -> None:
    train(compose_cfg("trainer.max_epochs=1", "trainer.enable_progress_bar=false"))
    run_id = _only_run_id(store)
    with pytest.raises(ExplabError, match=message):
        evaluate(compose_cfg(f"run_id={run_id}", f"config_overrides={overrides}", config_name="eval"))
    history = MlflowClient(tracking_uri_for(store)).get_metric_history(run_id, "test/acc")
    assert len(history) == 1, "nothing is logged into the run"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+trainer.limit_test_batches=2", r"trainer.limit_test_batches=2 tests part of it"),
        ("+trainer.limit_test_batches=0", r"trainer.limit_test_batches=0 tests none of it"),
        ("trainer=fast_dev_run", r"trainer.fast_dev_run=True tests only its first batches"),
    ],
)
def test_a_trainer_that_tests_part_of_the_test_set_is_refused(compose_cfg, store: Path, override, message) -> None:
    """Two batches were tested and logged into the run as its test/acc; none failed with an IndexError."""
    train(compose_cfg("trainer.max_epochs=1", "trainer.enable_progress_bar=false"))
    run_id = _only_run_id(store)
    with pytest.raises(
        UsageError, match=rf"logs its test metrics into the run, where they stand for the whole .*{message}"
    ):
        evaluate(compose_cfg(f"run_id={run_id}", override, config_name="eval"))
    assert len(MlflowClient(tracking_uri_for(store)).get_metric_history(run_id, "test/acc")) == 1


@pytest.mark.parametrize(
    ("command", "override", "message"),
    [
        ("explab-eval", "+data.eval_batch_size=64", r"explab-eval does not read \+data.eval_batch_size=64: it tests "
         r"with the run's recorded config; give changes to it as 'config_overrides=\[\"data.eval_batch_size=64\"\]'"),
        ("explab-eval", "data.eval_batch_size=64", r"explab-eval tests with the run's recorded config, which this "
         r"command line does not compose: give the change as 'config_overrides=\[\"data.eval_batch_size=64\"\]'"),
        ("explab-report", "+data.x=1", r"explab-report does not read \+data.x=1: explab-report --help lists its"),
        ("explab-predict", "model.x=1", r"explab-predict has no setting 'model': explab-predict --help lists its"),
    ],
)  # fmt: skip
def test_a_setting_the_command_does_not_read_is_refused(tmp_path: Path, command, override, message) -> None:
    """Hydra's advice for a key the command lacks is to add it with +, which the command then ignored:
    explab-eval +data.eval_batch_size=64 tested in the run's own batches."""
    given = {
        "explab-eval": "run_id=0123",
        "explab-report": "experiment=digits_cnn",
        "explab-predict": "model_uri=runs:/0123/model input=x.npy",
    }
    where = [f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs"]
    done = run_cli(command, *given[command].split(), override, *where, cwd=tmp_path)
    assert done.returncode == 1 and re.search(message, done.stderr), done.stderr[-2000:]


def test_data_moved_since_training_is_named_and_found_again_with_an_override(compose_cfg, tmp_path: Path) -> None:
    """The researcher's case: the run trained on one machine's files, which now live somewhere else."""
    trained_on = write_mnist(tmp_path / "mnist")
    cfg = compose_cfg(
        "experiment=mnist_cnn",
        f"data.data_dir={trained_on}",
        "data.val_size=40",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    )
    trained = train(cfg)
    [checkpoint] = (Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt")
    moved = shutil.move(trained_on, tmp_path / "moved")

    with pytest.raises(ExplabError, match=rf"{trained_on}"):
        evaluate(compose_cfg(f"ckpt_path={checkpoint}", config_name="eval"))
    evaluated = evaluate(
        compose_cfg(f"ckpt_path={checkpoint}", f'config_overrides=["data.data_dir={moved}"]', config_name="eval")
    )
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"])


def test_a_checkpoint_folder_lists_the_checkpoints_in_it(compose_cfg, tmp_path: Path) -> None:
    (tmp_path / "last.ckpt").write_bytes(b"")
    (tmp_path / "epoch_003.ckpt").write_bytes(b"")
    with pytest.raises(
        CheckpointError, match=rf"{tmp_path} is a folder; give a .ckpt file in it \(epoch_003.ckpt, last.ckpt\)"
    ):
        evaluate(compose_cfg(f"ckpt_path={tmp_path}", config_name="eval"))


@pytest.mark.parametrize(
    ("saved", "refusal"),
    [
        ({"weights": [1.0]}, "has no state_dict: it is not a Lightning checkpoint"),
        ({"state_dict": {}}, "carries no explab config: it was not written by explab-train"),
    ],
)
def test_a_checkpoint_explab_cannot_test_is_named_with_why(compose_cfg, tmp_path: Path, saved: dict, refusal) -> None:
    import torch

    torch.save(saved, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match=rf"checkpoint {tmp_path}/other.ckpt {refusal}$"):
        evaluate(compose_cfg(f"ckpt_path={tmp_path}/other.ckpt", config_name="eval"))
