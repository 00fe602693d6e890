"""explab used from a lab's own repository: examples/wine_lab trains and sweeps with its own code and conf/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli, runs_in

LAB = Path(__file__).resolve().parents[2] / "examples" / "wine_lab"


def explab_train_in_lab(tmp_path: Path, *args: str, multirun: bool = False, lab: Path = LAB):
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
        cwd=lab,
        env={"PYTHONPATH": str(lab)},  # what `pip install -e examples/wine_lab` gives
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


@pytest.mark.slow
def test_the_labs_own_checkout_is_recorded_and_an_edit_of_it_between_seeds_is_named(tmp_path: Path) -> None:
    """explab installed from its own checkout recorded that checkout alone: the lab's package, in a repository
    of its own, could be edited between two seeds with nothing recorded, and the report pooled them."""
    lab = tmp_path / "lab"
    shutil.copytree(LAB, lab, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))

    def git(*args: str) -> str:
        command = ["git", "-c", "user.name=lab", "-c", "user.email=lab@example.org", *args]
        return subprocess.run(command, cwd=lab, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "the lab's recipe")
    head = git("rev-parse", "HEAD")
    assert explab_train_in_lab(tmp_path, "seed=1", "trainer.max_epochs=2", lab=lab).returncode == 0
    backbone = lab / "wine_lab" / "backbone.py"
    backbone.write_text(backbone.read_text().replace("nn.GELU()", "nn.SiLU()"))
    assert git("status", "--porcelain") == "M wine_lab/backbone.py", "the activation is edited"
    assert explab_train_in_lab(tmp_path, "seed=2", "trainer.max_epochs=2", lab=lab).returncode == 0

    runs = sorted(runs_in(tmp_path / "mlruns", "wine_resmlp"), key=lambda r: r.data.params["seed"])
    tags = [run.data.tags for run in runs]
    assert [t["git.wine_lab.commit"] for t in tags] == [head, head]
    assert [t["git.wine_lab.dirty"] for t in tags] == ["false", "true"]
    assert "git.wine_lab.diff_sha256" not in tags[0] and re.fullmatch(
        "[0-9a-f]{12}", tags[1]["git.wine_lab.diff_sha256"]
    )
    explabs = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert tags[0].get("git.commit", "") == explabs, "explab's own checkout, as before"
    assert not any(key.startswith(("git.torch.", "git.explab.")) for key in tags[0]), "nor a library's"

    report = run_cli("explab-report", "experiment_name=wine_resmlp", f"paths.mlruns_dir={tmp_path}/mlruns", cwd=lab)
    assert report.returncode == 0, report.stderr[-3000:]
    edited = f"{head[:7]} with uncommitted changes {tags[1]['git.wine_lab.diff_sha256']}"
    said = f"These runs trained from different code (git.wine_lab.commit {head[:7]} (1 run), {edited} (1 run))"
    assert said in report.stdout, report.stdout[-3000:]
    assert "add filter= on the tag named here" in report.stdout

    backbone.write_text(backbone.read_text().replace("nn.SiLU()", "nn.Tanh()"))  # another edit of one commit
    again = explab_train_in_lab(tmp_path, f"reproduce={runs[1].info.run_id}", "trainer.max_epochs=1", lab=lab)
    assert again.returncode == 0, again.stderr[-3000:]
    [now] = [
        r.data.tags for r in runs_in(tmp_path / "mlruns", "wine_resmlp") if "explab.reproduced_from" in r.data.tags
    ]
    said = f"{tags[1]['git.wine_lab.diff_sha256']} then, {now['git.wine_lab.diff_sha256']} now"
    assert f"git.wine_lab.diff_sha256 differs from the source run: {said}" in again.stdout, again.stdout[-3000:]
