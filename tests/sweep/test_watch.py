"""A trial's job stops when the sweep ends its trial elsewhere: real journal studies, real training jobs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import lightning as L
import optuna
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel
from omegaconf import OmegaConf
from optuna.trial import TrialState

from explab.sweep.pruner import record_pruner
from explab.sweep.pruning import OptunaPruning
from explab.sweep.storage import open_storage
from explab.sweep.trial import TrialJob
from explab.sweep.watch import TrialEnded, TrialWatch
from explab.tracking.record import open_run
from explab.tracking.store import open_client
from explab.train import train
from tests.conftest import BIN, root_env, runs_in, tracking_uri_for


def open_trial(store: Path) -> tuple[str, optuna.Study, optuna.Trial]:
    url = f"journal:///{store}/optuna.journal"
    study = optuna.create_study(study_name="watched", storage=open_storage(url), direction="maximize")
    return url, study, study.ask()


def trial_overrides(url: str, number: int) -> list[str]:
    return [
        "++optuna_trial.study_name=watched",
        f"++optuna_trial.number={number}",
        f"++optuna_trial.storage='{url}'",
        "++optuna_trial.objective=[val/acc_best]",
        "optimized_metric=val/acc_best",  # the pruning callback reports too: the watch must ask before it
    ]


def test_a_job_for_a_trial_that_is_over_trains_nothing_and_records_nothing(compose_cfg, store: Path) -> None:
    url, study, trial = open_trial(store)
    study.tell(trial, state=TrialState.FAIL)  # a stopped sweep failed it while its job waited in a queue
    with pytest.raises(TrialEnded, match=f"trial {trial.number} of study 'watched' is already FAIL"):
        train(compose_cfg(*trial_overrides(url, trial.number)))
    assert runs_in(store, "digits_cnn") == []


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["default", "ddp_cpu"])  # under DDP every rank stops at the same epoch
def test_a_running_job_stops_within_an_epoch_once_its_trial_is_ended(tmp_path: Path, trainer: str) -> None:
    store = tmp_path / "mlruns"
    store.mkdir()
    url, study, trial = open_trial(store)
    job = subprocess.Popen(
        [
            str(BIN / "explab-train"),
            *trial_overrides(url, trial.number),
            f"trainer={trainer}",
            "trainer.max_epochs=500",
            "callbacks.early_stopping.patience=500",
            "log_model=false",
            "trainer.enable_progress_bar=false",
            f"paths.mlruns_dir={store}",
            f"paths.log_dir={tmp_path}/logs",
        ],
        cwd=tmp_path,
        env=root_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # explab's client waits while the job creates the store: MLflow's own, opened as the job starts, ran the
    # schema migrations beside the job's and one of the two could fail
    client = open_client(tracking_uri_for(store))
    deadline = time.monotonic() + 120
    while not (runs := runs_in(store, "digits_cnn")) or not client.get_metric_history(runs[0].info.run_id, "val/acc"):
        if job.poll() is not None:
            pytest.fail(f"the job ended before its first epoch's end: {job.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "the job trains its first epoch"
        time.sleep(0.2)
    study.tell(trial, state=TrialState.FAIL)  # what Ctrl-C on the sweep does to the trials of its SLURM jobs
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert f"trial {trial.number} of study 'watched' is already FAIL" in stderr and "this job stops" in stderr
    assert stderr.count("Error: ") == 1, "every rank stops together, and one of them says so"
    [run] = runs_in(store, "digits_cnn")
    assert run.info.status == "KILLED", "stopped on purpose, not broken"
    assert run.data.tags["explab.status_reason"].startswith("TrialEnded: ")
    epochs = len(client.get_metric_history(run.info.run_id, "val/acc"))
    assert epochs < 100, f"{epochs} epochs: the job went on training for an ended trial"
    assert "error.txt" not in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_a_trial_ended_between_the_watch_and_the_pruning_report_stops_the_job_the_same_way(store: Path) -> None:
    """The sweep can end the trial in the moment between the watch's question and the pruning callback's
    report; Optuna then refuses the report, which must not read as the job's own failure."""
    url, study, trial = open_trial(store)
    optuna_trial = OmegaConf.create({"study_name": "watched", "number": trial.number, "storage": url})

    class LogsAccuracy(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val/acc", 0.5)
            return super().validation_step(batch, batch_idx)

    class EndsTheTrialInEpoch1(L.Callback):
        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 1:
                study.tell(trial, state=TrialState.FAIL)

    trainer = L.Trainer(
        max_epochs=5,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[TrialWatch(optuna_trial), EndsTheTrialInEpoch1(), OptunaPruning(optuna_trial, "val/acc")],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(TrialEnded, match=f"trial {trial.number} of study 'watched' is already FAIL.*this job stops"):
        trainer.fit(LogsAccuracy())
    assert trainer.current_epoch == 1
    assert study.trials[0].intermediate_values == {0: 0.5}, "epoch 0 was reported, epoch 1 was not"


def test_a_trial_ended_as_its_job_opens_a_run_ends_that_run_killed(compose_cfg, store: Path) -> None:
    url, study, trial = open_trial(store)
    cfg = compose_cfg(*trial_overrides(url, trial.number))
    study.tell(trial, state=TrialState.FAIL)  # after the job's check_open, before it records its run on the trial
    with pytest.raises(TrialEnded, match=r"is already FAIL.*this job stops"):
        open_run(cfg, TrialJob(cfg))
    [run] = runs_in(store, "digits_cnn")
    assert run.info.status == "KILLED", "the run was created: it must not be left RUNNING"


@pytest.mark.parametrize(("max_epochs", "pruned_at"), [(3, 0), (1, None)])
def test_a_trial_is_not_pruned_after_its_last_epoch(store: Path, max_epochs: int, pruned_at: int | None) -> None:
    """Pruned after its last epoch, a trial that trained to the end was thrown away as PRUNED."""
    url = f"journal:///{store}/optuna.journal"
    study = optuna.create_study(study_name="pruned", storage=open_storage(url), direction="maximize")
    record_pruner(study, {"_target_": "optuna.pruners.ThresholdPruner", "lower": 1.0})  # prunes any accuracy
    trial = study.ask()
    pruning = OptunaPruning(OmegaConf.create({"study_name": "pruned", "number": trial.number, "storage": url}), "acc")

    class LogsAccuracy(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("acc", 0.5)
            return super().validation_step(batch, batch_idx)

    trainer = L.Trainer(
        max_epochs=max_epochs, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[pruning],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(LogsAccuracy())
    assert pruning.pruned_at == pruned_at
    assert study.trials[0].intermediate_values == {0: 0.5}, "the last epoch is still reported"
