"""train(cfg) end to end against a real SQLite MLflow store: what a run records, and how runs end."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import mlflow
import pytest
import torch
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient

from explab.callbacks import NonFiniteLossError
from explab.checkpoints import CheckpointError
from explab.config import config_dir
from explab.errors import ConfigError, UsageError
from explab.eval import evaluate
from explab.reproduce import config_from_recorded_run
from explab.train import train
from tests.conftest import runs_in, tracking_uri_for


def only_run(store: Path, experiment: str = "digits_cnn"):
    runs = runs_in(store, experiment)
    assert len(runs) == 1, f"expected one run, found {len(runs)}"
    return runs[0]


def test_fast_dev_run_of_default_experiment(compose_cfg, store: Path, recwarn) -> None:
    metrics = train(compose_cfg("trainer=fast_dev_run"))
    assert {"train/loss", "val/loss", "test/acc", "test/f1"} <= metrics.keys()
    run = only_run(store)
    assert run.info.status == "FINISHED"
    # a smoke test logs no epoch: no empty learning-curve figure, and no matplotlib warning about one
    plots = {a.path for a in MlflowClient(tracking_uri_for(store)).list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/confusion_matrix.png"}
    assert not [w for w in recwarn if "No artists" in str(w.message)]


def test_a_run_without_a_test_announces_its_best_validation_value(compose_cfg, store: Path, caplog) -> None:
    """test=false once ended on "MLflow run ... FINISHED () in ..."."""
    caplog.set_level(logging.INFO, logger="explab")
    metrics = train(compose_cfg("trainer.max_epochs=1", "trainer.enable_progress_bar=false", "test=false"))
    assert f"FINISHED (val/acc_best={metrics['val/acc_best']:.4f}) in" in caplog.text


def test_validation_turned_off_in_lightnings_way_trains_and_tests_the_last_checkpoint(
    compose_cfg, store: Path, caplog
) -> None:
    """``+trainer.limit_val_batches=0`` failed the run in Lightning's EarlyStopping, whose val/acc never came."""
    caplog.set_level(logging.INFO, logger="explab")
    metrics = train(
        compose_cfg("trainer.max_epochs=2", "trainer.enable_progress_bar=false", "+trainer.limit_val_batches=0")
    )
    assert only_run(store).info.status == "FINISHED"
    assert "test/acc" in metrics and not any(name.startswith("val/") for name in metrics)
    assert "callbacks.early_stopping skipped: it follows val/acc and the fit does not validate" in caplog.text
    assert "checkpoints/last.ckpt" in caplog.text, "the last checkpoint is tested, as with data.val_fraction=0"


@pytest.mark.parametrize("callbacks", ["callbacks=none", "callbacks=early_stopping"])
def test_any_choice_of_callbacks_keeps_explabs_checkpoints(compose_cfg, store: Path, callbacks: str) -> None:
    """They were an option of the callbacks group: ``callbacks=early_stopping`` tested Lightning's checkpoint of
    the last epoch, tagged as the best, and left no last.ckpt to resume from."""
    cfg = compose_cfg(callbacks, "trainer.max_epochs=2", "trainer.enable_progress_bar=false")
    train(cfg)
    tags = only_run(store).data.tags
    assert tags["explab.best_checkpoint"].startswith("checkpoints/epoch_"), tags.get("explab.best_checkpoint")
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


def test_no_checkpoint_is_kept_when_asked(compose_cfg, store: Path, tmp_path: Path) -> None:
    metrics = train(compose_cfg("checkpoint=none", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"))
    run = only_run(store)
    assert run.info.status == "FINISHED" and "test/acc" in metrics
    assert "explab.best_checkpoint" not in run.data.tags
    assert not list(tmp_path.rglob("*.ckpt")), "nor one of Lightning's own"
    with pytest.raises(
        CheckpointError, match=rf"checkpoint=none. explab-train reproduce={run.info.run_id} checkpoint="
    ):
        evaluate(compose_cfg(f"run_id={run.info.run_id}", config_name="eval"))
    resume = compose_cfg(f"resume={run.info.run_id}")
    GlobalHydra.instance().clear()
    with (
        initialize_config_dir(str(config_dir()), version_base="1.3"),
        pytest.raises(UsageError, match=rf"checkpoint=none, .*: reproduce={run.info.run_id} checkpoint=default"),
    ):
        config_from_recorded_run(resume)


def test_one_epoch_run_is_fully_recorded(compose_cfg, store: Path) -> None:
    metrics = train(compose_cfg("trainer.max_epochs=2", "trainer.enable_progress_bar=false", "seed=7"))
    run = only_run(store)
    client = MlflowClient(tracking_uri_for(store))

    assert run.info.status == "FINISHED"
    # params: the flattened, resolved config
    assert run.data.params["optimizer.lr"] == "0.003"
    assert run.data.params["model.backbone.depth"] == "2"
    assert run.data.params["seed"] == "7"
    assert "hydra.run.dir" not in run.data.params
    # metrics per epoch, named by split, and the test metrics of the best checkpoint
    for key in (
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/f1",
        "val/acc_best",
        "test/acc",
        "test/precision",
        "test/recall",
        "test/f1",
        "perf/fit_seconds",
        "perf/epoch_seconds",
        "perf/samples_per_second",
        # MLflow's sampler; a fit shorter than its interval still leaves the sample taken at the start
        "system/cpu_utilization_percentage",
        "system/system_memory_usage_megabytes",
    ):
        assert key in run.data.metrics, key
    # training tracks loss and accuracy only: every metric update would be paid on every step
    assert "train/f1" not in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert metrics["test/acc"] > 0.5
    # tags
    tags = run.data.tags
    assert tags["experiment"] == "digits_cnn"
    assert tags["seed"] == "7"
    assert tags["hostname"]
    assert len(tags["data.fingerprint"]) == 16
    assert tags["version.torch"]
    # what computed the numbers: the same seed on another CPU kind or thread count rounds differently
    assert tags["hardware.cpu"]
    assert tags["hardware.cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert tags["hardware.torch_threads"] == str(torch.get_num_threads())
    assert "hardware.gpu" not in tags, "a CPU run names no GPU"
    assert tags["mlflow.source.name"] == "explab-train", "the UI's Source column"
    if "git.commit" in tags:
        assert len(tags["git.commit"]) == 40
    # artifacts: config, overrides, the best checkpoint
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "config")}
    assert {"config/config.yaml", "config/overrides.yaml", "config/environment.yaml"} <= artifacts
    checkpoint = tags["explab.best_checkpoint"]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == [checkpoint]
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/learning_curves.png", "plots/confusion_matrix.png"}
    overrides = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/config/overrides.yaml")
    assert "seed=7" in overrides
    # the splits as MLflow dataset inputs: one per split, the fingerprint as digest, searchable
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"digits-train", "digits-val", "digits-test"}
    contexts = {name: [t.value for t in i.tags if t.key == "mlflow.data.context"] for name, i in inputs.items()}
    assert contexts == {"digits-train": ["training"], "digits-val": ["validation"], "digits-test": ["test"]}
    train_split = inputs["digits-train"].dataset
    assert train_split.digest == tags["data.fingerprint"] and "digits.csv.gz" in train_split.source
    assert json.loads(train_split.profile)["features_shape"] == [int(tags["data.n_train"]), 1, 8, 8]
    found = client.search_runs(
        [run.info.experiment_id], f"dataset.digest = '{tags['data.fingerprint']}' AND dataset.context = 'test'"
    )
    assert [r.info.run_id for r in found] == [run.info.run_id]


def test_a_monitor_given_alone_keeps_the_checkpoint_its_name_says_is_best(compose_cfg, store: Path) -> None:
    """``monitor=val/loss`` without its mode kept the epoch with the highest loss and tested it as the best."""
    train(compose_cfg("monitor=val/loss", "trainer.max_epochs=3", "trainer.enable_progress_bar=false"))
    run = only_run(store)
    history = MlflowClient(tracking_uri_for(store)).get_metric_history(run.info.run_id, "val/loss")
    lowest = min(range(len(history)), key=lambda epoch: history[epoch].value)
    assert len(history) == 3 and lowest > 0, "the test needs a loss that falls after the first epoch"
    assert run.data.tags["explab.best_checkpoint"] == f"checkpoints/epoch_{lowest:03d}.ckpt"
    # recorded as the mode it used, so the run compares equal to one that set monitor_mode=min
    assert run.data.params["monitor_mode"] == run.data.params["callbacks.model_checkpoint.mode"] == "min"


@pytest.mark.parametrize("every", [1, 2])
def test_a_plateau_scheduler_cuts_the_learning_rate_when_the_monitor_stops_improving(
    compose_cfg, store, every: int
) -> None:
    """``scheduler=plateau`` steps torch's ReduceLROnPlateau with the run's monitor in its mode after each epoch
    that validates: the learning rates the run logged are those torch's own scheduler gives for the validation
    accuracies it logged. Validating every second epoch, Lightning failed the fit in the first ("conditioned on
    metric val/acc which is not available")."""
    epochs = 6
    train(
        compose_cfg(
            "scheduler=plateau",
            "scheduler.patience=0",
            "+scheduler.threshold=0.5",  # no epoch after the first improves by half: the rate is cut each time
            f"trainer.max_epochs={epochs}",
            f"trainer.check_val_every_n_epoch={every}",
            "trainer.enable_progress_bar=false",
        )
    )
    run = only_run(store)
    client = MlflowClient(tracking_uri_for(store))
    accuracies = iter(m.value for m in client.get_metric_history(run.info.run_id, "val/acc"))
    rates = [m.value for m in client.get_metric_history(run.info.run_id, "lr-Adam")]
    assert run.data.params["scheduler.mode"] == "max" and len(rates) == epochs
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=rates[0])
    oracle = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=0, threshold=0.5)
    expected = [rates[0]]
    for epoch in range(1, epochs):
        if epoch % every == 0:  # the epoch before this one validated
            oracle.step(next(accuracies))
        expected.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx(expected) and rates[-1] < rates[0]


@pytest.mark.parametrize("steps", [50, 60])
def test_a_cosine_ends_where_a_step_limit_ends_the_run(compose_cfg, store, steps: int) -> None:
    """Fitted to ``trainer.max_epochs=10``, a cosine in a run that ``+trainer.max_steps`` ended within 3 epochs
    had barely begun to fall (0.0027 of 0.003 in the last epoch). An epoch here is 20 batches; a limit within
    an epoch counts that epoch."""
    train(
        compose_cfg(
            "scheduler=cosine",
            "trainer.max_epochs=10",
            f"+trainer.max_steps={steps}",
            "trainer.enable_progress_bar=false",
        )
    )
    run = only_run(store)
    rates = [m.value for m in MlflowClient(tracking_uri_for(store)).get_metric_history(run.info.run_id, "lr-Adam")]
    assert rates == pytest.approx([0.003 * (1 + math.cos(math.pi * epoch / 3)) / 2 for epoch in range(3)])


@pytest.mark.parametrize("steps", [5, 30])
def test_a_step_limit_inside_an_epoch_validates_the_steps_it_trained_last(compose_cfg, store, steps: int) -> None:
    """Lightning validates at an epoch's end, and ``+trainer.max_steps`` ended the fit inside one without it:
    at 5 steps (an epoch here is 20 batches) nothing validated and the default early stopping failed the run
    ("conditioned on metric `val/acc` which is not available"); at 30 the 10 steps after the first epoch's
    end were never validated, and the test took that epoch's checkpoint."""
    metrics = train(compose_cfg(f"+trainer.max_steps={steps}", "trainer.enable_progress_bar=false"))
    run = only_run(store)
    assert run.info.status == "FINISHED" and "test/acc" in metrics
    history = MlflowClient(tracking_uri_for(store)).get_metric_history(run.info.run_id, "val/acc")
    # Lightning logs a validation at its last training batch, counted from 0
    assert [m.step for m in history][-1] == steps - 1, "the last validation is of the weights the fit ends on"


@pytest.mark.parametrize(("epochs", "validated"), [(3, [39, 59]), (4, [39, 79])])
def test_the_last_epoch_validates_where_check_val_every_n_epoch_would_skip_it(
    compose_cfg, store, epochs: int, validated: list[int]
) -> None:
    """``trainer.check_val_every_n_epoch=2`` with 3 epochs trained the third unvalidated: the best checkpoint
    could not be its weights, and the test read the second epoch's."""
    train(
        compose_cfg(
            f"trainer.max_epochs={epochs}", "trainer.check_val_every_n_epoch=2", "trainer.enable_progress_bar=false"
        )
    )
    run = only_run(store)
    history = MlflowClient(tracking_uri_for(store)).get_metric_history(run.info.run_id, "val/acc")
    # an epoch here is 20 batches; Lightning logs a validation at its epoch's last batch, counted from 0
    assert [m.step for m in history] == validated


@pytest.mark.parametrize(("interval", "validated"), [(30, [29, 39]), (20, [19, 39])])
def test_the_fits_end_validates_between_checks_counted_across_epochs(
    compose_cfg, store, interval: int, validated: list[int]
) -> None:
    """``check_val_every_n_epoch=null`` validates every ``val_check_interval`` batches across epochs: a fit of 40
    batches checked every 30 left its last 10 unvalidated, and the test read the checkpoint of batch 30."""
    train(compose_cfg("trainer.max_epochs=2", "trainer.check_val_every_n_epoch=null",
                      f"+trainer.val_check_interval={interval}", "trainer.enable_progress_bar=false"))  # fmt: skip
    run = only_run(store)
    history = MlflowClient(tracking_uri_for(store)).get_metric_history(run.info.run_id, "val/acc")
    assert [m.step for m in history] == validated, "at each check, and at the last batch once, not twice"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.num_classes=5"],
            r"labels run from 0 to 9, and model.num_classes=5 gives the model outputs for 0 to 4: give "
            r"model.num_classes=10$",
        ),
        (
            ["model=cnn"],
            r"samples are \[1, 8, 8\], and the model is built for model.backbone.input_shape=\[1, 28, 28\]: give "
            r"model.backbone.input_shape=\[1, 8, 8\]",
        ),
        (
            ["model=mlp_classifier", "model.backbone.in_features=32"],
            r"samples have 64 features, and the model is built for model.backbone.in_features=32: give "
            r"model.backbone.in_features=64$",
        ),
    ],
)
def test_a_model_built_for_other_data_is_refused_naming_the_setting(
    compose_cfg, store, overrides: list[str], message: str
) -> None:
    """The first batch failed deep in torch: "IndexError: Target 9 is out of bounds" for too few classes,
    "mat1 and mat2 shapes cannot be multiplied (256x3136 and 256x128)" for a CNN built for other images."""
    with pytest.raises(UsageError, match=message):
        train(compose_cfg(*overrides, "trainer.max_epochs=1", "trainer.enable_progress_bar=false"))
    assert only_run(store).info.status == "FAILED"


@pytest.mark.parametrize("experiment", ["rotten_tomatoes_sentiment", "rotten_tomatoes_fasttext"])
def test_a_text_model_whose_embedding_is_smaller_than_the_vocabulary_is_refused(
    compose_cfg, store, tmp_path, experiment
) -> None:
    """TextRNN's first batch failed with "IndexError: index out of range in self"; BagOfNgrams trained on, its
    token ids past model.backbone.vocab_size landing on the rows of hashed bigrams."""
    from tests.support.formats import write_snippets

    cfg = compose_cfg(
        f"experiment={experiment}",
        f"data.path={write_snippets(tmp_path / 'snippets.csv.gz')}",
        "data.min_freq=1",
        "model.backbone.vocab_size=10",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    )
    with pytest.raises(UsageError, match=r"token ids run to \d+, and the model's embedding is built for model.backb"):
        train(cfg)
    assert only_run(store, experiment).info.status == "FAILED"


def test_a_batch_size_that_leaves_batch_norm_one_sample_names_the_sizes_next_to_it(compose_cfg, store) -> None:
    """308 diabetes training samples in batches of 307 end each epoch on a batch of one, and a batch norm layer
    failed there with torch's "Expected more than 1 value per channel when training"."""
    cfg = compose_cfg(
        "experiment=diabetes_mlp",
        "model.backbone.batch_norm=true",
        "data.batch_size=307",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    )
    with pytest.raises(UsageError, match=r"308 training samples in batches of data.batch_size=307 leave 1 for the la"):
        train(cfg)
    run = only_run(store, "diabetes_mlp")
    assert run.info.status == "FAILED" and "Give data.batch_size=306 or 308" in run.data.tags["explab.status_reason"]


def test_diverging_run_is_failed_with_a_clear_error(compose_cfg, store: Path) -> None:
    cfg = compose_cfg("optimizer=sgd", "optimizer.lr=1e12", "trainer.max_epochs=2", "trainer.enable_progress_bar=false")
    with pytest.raises(NonFiniteLossError, match="Lower the learning rate"):
        train(cfg)
    run = only_run(store)
    assert run.info.status == "FAILED"
    assert "NonFiniteLossError" in run.data.tags["explab.status_reason"]


@pytest.mark.parametrize(("interval", "most_writes"), [(0, 3), (3600, 1)])
def test_metrics_are_written_in_batches_and_none_is_lost(compose_cfg, store: Path, interval, most_writes) -> None:
    """Every epoch's values arrive, written with the last checkpoint: after each epoch (interval 0) or, when
    the interval is longer than the fit, once after the final epoch; never one write per hand-over."""
    cfg = compose_cfg(
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        "logger.mlflow.flush_seconds=3600",
        f"callbacks.last_checkpoint.min_interval_seconds={interval}",
    )
    train(cfg)
    client = MlflowClient(tracking_uri_for(store))
    run_id = only_run(store).info.run_id
    fit_keys = ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "lr-Adam", "perf/epoch_seconds")
    histories = {key: client.get_metric_history(run_id, key) for key in fit_keys}
    for key, history in histories.items():
        assert len(history) == 3, key
    assert [m.step for m in histories["val/acc"]] == sorted(m.step for m in histories["val/acc"])
    writes = {m.timestamp for history in histories.values() for m in history}
    assert len(writes) <= most_writes, "one write per last checkpoint, not one per hand-over"


def test_metrics_held_back_are_written_when_the_run_fails(compose_cfg, store: Path) -> None:
    cfg = compose_cfg(
        "trainer.max_epochs=4",
        "trainer.enable_progress_bar=false",
        "logger.mlflow.flush_seconds=3600",
        "checkpoint=none",  # nothing is written before the run ends
        "+callbacks.fail._target_=tests.support.callbacks.FailAtEpoch",
        "+callbacks.fail.epoch=2",
    )
    with pytest.raises(RuntimeError, match="on purpose"):
        train(cfg)
    run = only_run(store)
    assert run.info.status == "FAILED"
    history = MlflowClient(tracking_uri_for(store)).get_metric_history(run.info.run_id, "val/acc")
    assert len(history) == 2, "the values held back are written when Lightning finalizes the failed fit"


def test_validating_less_often_than_an_epoch_holds_is_named_with_the_batches_there_are(
    compose_cfg, store: Path
) -> None:
    """Lightning counts the batches only inside the fit, after the run opened: the run ends FAILED, and the error
    names the count and the fixes instead of Lightning's traceback."""
    cfg = compose_cfg("+trainer.val_check_interval=100000", "trainer.enable_progress_bar=false")
    with pytest.raises(UsageError, match=r"val_check_interval=100000 validates .* an epoch here has 20 per device"):
        train(cfg)
    assert only_run(store).info.status == "FAILED"


def test_validating_every_n_batches_across_epochs_trains(compose_cfg, store: Path) -> None:
    """The way out that message names: with check_val_every_n_epoch=null the batches count across epochs."""
    cfg = compose_cfg(
        "+trainer.val_check_interval=30",
        "trainer.check_val_every_n_epoch=null",
        "trainer.max_epochs=3",
        "test=false",
        "trainer.enable_progress_bar=false",
    )
    train(cfg)
    run = only_run(store)
    history = MlflowClient(tracking_uri_for(store)).get_metric_history(run.info.run_id, "val/acc")
    assert run.info.status == "FINISHED" and len(history) == 2, "60 training batches, validated after 30 and 60"


def test_error_while_building_marks_the_run_failed(compose_cfg, store: Path) -> None:
    # a value Lightning refuses only as it builds the Trainer, once the run exists
    cfg = compose_cfg("+trainer.reload_dataloaders_every_n_epochs=-1")
    with pytest.raises(Exception, match="reload_dataloaders_every_n_epochs"):
        train(cfg)
    assert only_run(store).info.status == "FAILED"


def test_a_model_that_cannot_be_built_is_refused_before_any_run(compose_cfg, store: Path) -> None:
    """The constructor's own ValueError, named by the config key that built it rather than in Hydra's
    "Error in call to target" wrapping."""
    with pytest.raises(UsageError, match=r"^model.backbone: ConvNet needs depth >= 1 .*got depth=0\. Change it"):
        train(compose_cfg("model.backbone.depth=0"))
    assert not (store / "mlflow.db").exists()


def test_logger_none_writes_no_store(compose_cfg, store: Path) -> None:
    metrics = train(compose_cfg("logger=none", "trainer=fast_dev_run"))
    assert "test/acc" in metrics
    assert not (store / "mlflow.db").exists()


# one threshold given without a list passed the config check, then failed the run as it built its callbacks
@pytest.mark.parametrize("thresholds", ["[0.05,1.0]", "0.05"])
def test_time_to_a_threshold_is_logged_once_when_first_reached(compose_cfg, store: Path, thresholds: str) -> None:
    cfg = compose_cfg("trainer.max_epochs=3", "trainer.enable_progress_bar=false", f"time_to={{val/acc:{thresholds}}}")
    train(cfg)
    run = only_run(store)
    client = MlflowClient(tracking_uri_for(store))
    [reached] = client.get_metric_history(run.info.run_id, "time_to/val/acc_0.05")
    first_epoch = min(client.get_metric_history(run.info.run_id, "perf/epoch_seconds"), key=lambda m: m.step)
    # any accuracy beats 5 % after the first epoch: the time is that epoch's, logged once at its step
    assert reached.step == first_epoch.step and 0 < reached.value <= run.data.metrics["perf/fit_seconds"]
    assert [k for k in run.data.metrics if k.startswith("time_to/")] == ["time_to/val/acc_0.05"], "1 is not reached"


def test_time_to_a_metric_the_task_never_logs_is_refused_before_the_run(compose_cfg, store: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"time_to.val/accuracy=.*must be a metric this task logs: one of .*'val/acc'"
    ):
        train(compose_cfg("time_to={val/accuracy:[0.9]}"))
    assert not runs_in(store, "digits_cnn")
    # an accuracy of 1.5 is never reached: the run would log no time_to and not say why
    with pytest.raises(
        ConfigError, match=r"time_to.val/acc=.*must be thresholds val/acc can reach \(0 to 1\), not \[1.5\]"
    ):
        train(compose_cfg("time_to={val/acc:[0.9,1.5]}"))
    assert not runs_in(store, "digits_cnn")


@pytest.mark.slow
def test_runs_that_compile_their_model_one_after_another_in_a_process_each_compile_it(
    compose_cfg, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A sweep's trials run in one process: torch.compile kept each trial's code, and past ``recompile_limit``
    (8) compiled versions of the backbone's forward the trials trained uncompiled. Two full batches of
    training and one of validation compile it twice (training, and validation without gradients): with the
    limit at 3, the second run is past it unless the first run's code was dropped when it ended."""
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 3)
    for hidden in (32, 64):
        with caplog.at_level(logging.WARNING):
            train(
                compose_cfg(
                    "model.compile=true", f"model.backbone.hidden=[{hidden}]", "trainer.max_epochs=1", "test=false",
                    "trainer.enable_progress_bar=false", "+trainer.limit_train_batches=2",
                    "+trainer.limit_val_batches=1",
                )
            )  # fmt: skip
    assert "recompile_limit" not in caplog.text, caplog.text[-3000:]


def test_a_jobs_torch_threads_do_not_carry_into_the_next_job_of_its_process(compose_cfg, tmp_path: Path) -> None:
    """A multirun's jobs run one after another in one process: after ``-m trainer=ddp_cpu,cpu`` the second job
    trained on the half of the cores the first had set for its two processes; ``torch_threads`` likewise."""
    probe = tmp_path / "torch.txt"
    record = ["+callbacks.probe._target_=tests.support.callbacks.RecordTorchSettings", f"+callbacks.probe.path={probe}"]
    untouched = torch.get_num_threads()  # the suite runs with OMP_NUM_THREADS=1
    for threads in (f"torch_threads={untouched + 1}", "torch_threads=null"):
        train(compose_cfg(threads, "trainer.max_epochs=1", "test=false", "trainer.enable_progress_bar=false", *record))
    assert [int(line.split()[2]) for line in probe.read_text().splitlines()] == [untouched + 1, untouched]
    assert torch.get_num_threads() == untouched


def test_a_jobs_cudnn_autotuning_and_deterministic_algorithms_do_not_carry_into_the_next_job(
    compose_cfg, tmp_path: Path
) -> None:
    """Lightning sets cuDNN's autotuning only when ``trainer.benchmark`` is given and deterministic algorithms
    only when ``trainer.deterministic`` is: a job that gave neither ran with what the job before it had set."""
    probe = tmp_path / "torch.txt"
    record = ["+callbacks.probe._target_=tests.support.callbacks.RecordTorchSettings", f"+callbacks.probe.path={probe}"]
    says_neither = "trainer.deterministic=null"
    for settings in ("+trainer.benchmark=true", says_neither, "trainer.deterministic=true", says_neither):
        train(compose_cfg(settings, "trainer.max_epochs=1", "test=false", "trainer.enable_progress_bar=false", *record))
    benchmark_and_deterministic = [line.split()[3:] for line in probe.read_text().splitlines()]
    assert benchmark_and_deterministic == [["1", "0"], ["0", "0"], ["0", "1"], ["0", "0"]]
    assert not torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
