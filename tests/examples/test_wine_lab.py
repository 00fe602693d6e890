"""explab used from a lab's own repository: examples/wine_lab trains and sweeps with its own code and conf/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli, runs_in

LAB = Path(__file__).resolve().parents[2] / "examples" / "wine_lab"


def explab_train_in_lab(tmp_path: Path, *args: str, multirun: bool = False):
    """``explab-train`` run from the lab's folder, as its README shows, with every output under tmp_path."""
    return run_cli(
        "explab-train",
        *(["-m"] if multirun else []),
        "hydra.searchpath=[file://conf]",
        "experiment=wine_resmlp",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs",
        "trainer.enable_progress_bar=false",
        *args,
        cwd=LAB,
        env={"PYTHONPATH": str(LAB)},  # what `pip install -e examples/wine_lab` gives
    )


@pytest.mark.slow
def test_lab_package_trains_into_mlflow_with_its_own_data_backbone_and_configs(tmp_path: Path) -> None:
    done = explab_train_in_lab(tmp_path, "trainer.max_epochs=15")
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = runs_in(tmp_path / "mlruns", "wine_resmlp")
    assert run.info.status == "FINISHED"
    assert run.data.params["data._target_"] == "wine_lab.data.WineDataModule"
    assert run.data.params["model.backbone._target_"] == "wine_lab.backbone.ResidualMLP"
    assert run.data.params["optimizer._target_"] == "torch.optim.AdamW", "explab's own groups still apply"
    assert len(run.data.tags["data.fingerprint"]) == 16
    assert run.data.metrics["test/acc"] >= 0.85


@pytest.mark.slow
def test_lab_search_space_sweeps_two_trials_under_one_parent_run(tmp_path: Path) -> None:
    done = explab_train_in_lab(
        tmp_path,
        "hparams_search=wine_optuna",
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=3",
        f"hydra.sweep.dir={tmp_path}/multirun",
        multirun=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = runs_in(tmp_path / "mlruns", "wine_resmlp")
    [parent] = [r for r in runs if r.data.tags.get("explab.sweep") == "parent"]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_complete"] == 2
    assert sorted(r.data.tags["optuna.trial_number"] for r in trials) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in trials)
    assert all(r.data.params["model.backbone._target_"] == "wine_lab.backbone.ResidualMLP" for r in trials)


def test_help_lists_the_labs_own_options_beside_explabs(tmp_path: Path) -> None:
    done = explab_train_in_lab(tmp_path, "--help")
    assert done.returncode == 0, done.stderr[-3000:]
    groups = dict(line.split(": ", 1) for line in done.stdout.splitlines() if line.startswith("data: "))
    assert {"wine", "digits"} <= set(groups["data"].split(", ")), groups
    assert "experiment: " in done.stdout and "wine_resmlp" in done.stdout.split("experiment: ")[1].splitlines()[0]
