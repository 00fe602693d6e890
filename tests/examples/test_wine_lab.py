"""explab used from a lab's own repository: examples/wine_lab trains and sweeps with its own code and conf/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_wine

from explab.tracking import TrackedRun
from explab.tracking.store import open_client
from tests.conftest import ROOT, run_cli, runs_in, tracking_uri_for

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
    # the logged model takes the measurements as a table holds them, by name: without the lab's input recipe it
    # took the standardised tensors, and raw measurements were answered as if they were those
    wine = load_wine(as_frame=True).frame
    wine[list(reversed(wine.columns))].to_csv(tmp_path / "wine.csv", index=False)
    predict = [f"model_uri={run.info.run_id}", f"input={tmp_path}/wine.csv", f"output={tmp_path}/out.csv"]
    done = run_cli("explab-predict", *predict, f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path)
    assert done.returncode == 0 and "standard deviations" not in done.stderr, done.stderr[-3000:]
    predicted = [int(line.split(",")[1]) for line in (tmp_path / "out.csv").read_text().splitlines()[1:]]
    assert np.mean(np.array(predicted) == wine["target"].to_numpy()) >= 0.85


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
    assert {r.data.tags.get("explab.searchpath") for r in trials} == {f"['file://{LAB}/conf']"}, "reproduce= finds it"


def test_help_lists_the_labs_own_options_beside_explabs(tmp_path: Path) -> None:
    done = explab_train_in_lab(tmp_path, "--help")
    assert done.returncode == 0, done.stderr[-3000:]
    groups = dict(line.split(": ", 1) for line in done.stdout.splitlines() if line.startswith("data: "))
    assert {"wine", "digits"} <= set(groups["data"].split(", ")), groups
    assert "experiment: " in done.stdout and "wine_resmlp" in done.stdout.split("experiment: ")[1].splitlines()[0]


def test_a_lab_package_off_the_path_is_named_with_the_fix_before_any_run(tmp_path: Path) -> None:
    """Hydra answered "Error locating target" when it instantiated the backbone, and explab's advice, composing
    without the lab's conf/, added "Did you mean: experiment=diabetes_mlp?"."""
    lab_conf = [f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs"]
    done = run_cli("explab-train", "hydra.searchpath=[file://conf]", "experiment=wine_resmlp", *lab_conf, cwd=LAB)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: data._target_=wine_lab.data.WineDataModule cannot be imported: there is no module named 'wine_lab'. "
        "Install the package that holds it (pip install -e its folder), or put the folder that holds wine_lab/ "
        "on PYTHONPATH"
    ), done.stderr[-3000:]
    assert runs_in(tmp_path / "mlruns", "wine_resmlp") == [], "refused before a run exists"


def test_a_misspelt_lab_experiment_is_answered_with_the_labs_own_option(tmp_path: Path) -> None:
    lab_conf = [f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs"]
    done = run_cli("explab-train", "hydra.searchpath=[file://conf]", "experiment=wine_resmpl", *lab_conf, cwd=LAB)
    assert done.returncode == 1
    assert done.stderr.strip().endswith("Did you mean: experiment=wine_resmlp?"), done.stderr[-3000:]


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
    client = open_client(tracking_uri_for(tmp_path / "mlruns"))
    logged = [{f.path for f in client.list_artifacts(run.info.run_id, "config")} for run in runs]
    assert "config/git_diff.wine_lab.patch" not in logged[0] and "config/git_diff.wine_lab.patch" in logged[1]
    edit = TrackedRun(client.tracking_uri, runs[1].info.run_id).load_text("config/git_diff.wine_lab.patch")
    changed = [line for line in edit.splitlines() if line.startswith(("-    ", "+    "))]
    assert [line[0] for line in changed] == ["-", "+"] and "nn.SiLU()" in changed[1], edit
    explabs = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert tags[0].get("git.commit", "") == explabs, "explab's own checkout, as before"
    assert not any(key.startswith(("git.torch.", "git.explab.")) for key in tags[0]), "nor a library's"

    report = run_cli("explab-report", "experiment_name=wine_resmlp", f"paths.mlruns_dir={tmp_path}/mlruns", cwd=lab)
    assert report.returncode == 0, report.stderr[-3000:]
    edited = f"{head[:7]} with uncommitted changes {tags[1]['git.wine_lab.diff_sha256']}"
    said = f"These runs trained from different code (git.wine_lab.commit {head[:7]} (1 run), {edited} (1 run))"
    assert said in report.stdout, report.stdout[-3000:]
    assert "To report one commit's runs, add commit=COMMIT" in report.stdout

    backbone.write_text(backbone.read_text().replace("nn.SiLU()", "nn.Tanh()"))  # another edit of one commit
    again = explab_train_in_lab(tmp_path, f"reproduce={runs[1].info.run_id}", "trainer.max_epochs=1", lab=lab)
    assert again.returncode == 0, again.stderr[-3000:]
    [now] = [
        r.data.tags for r in runs_in(tmp_path / "mlruns", "wine_resmlp") if "explab.reproduced_from" in r.data.tags
    ]
    said = f"{tags[1]['git.wine_lab.diff_sha256']} then, {now['git.wine_lab.diff_sha256']} now"
    assert f"git.wine_lab.diff_sha256 differs from the source run: {said}" in again.stdout, again.stdout[-3000:]


@pytest.mark.slow
def test_reproduce_finds_the_labs_conf_from_its_record_and_names_it_once_moved(tmp_path: Path) -> None:
    """reproduce= of a lab's run composed its config without the lab's conf/ (Hydra keeps the search path with
    its own overrides), and failed with "Could not find 'experiment/wine_resmlp'" unless given it again."""
    lab = tmp_path / "lab"
    shutil.copytree(LAB, lab, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    assert explab_train_in_lab(tmp_path, "trainer.max_epochs=1", lab=lab).returncode == 0
    [source] = runs_in(tmp_path / "mlruns", "wine_resmlp")
    assert source.data.tags["explab.searchpath"] == f"['file://{lab.resolve()}/conf']", "absolute, not file://conf"
    outputs = [f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs"]

    def reproduce(run_id: str, *args: str, code: Path = lab):  # from another folder than the lab's
        return run_cli(
            "explab-train", f"reproduce={run_id}", *outputs, *args, cwd=tmp_path, env={"PYTHONPATH": str(code)}
        )

    again = reproduce(source.info.run_id)
    assert again.returncode == 0, again.stderr[-3000:]
    [copy] = [r for r in runs_in(tmp_path / "mlruns", "wine_resmlp") if r.info.run_id != source.info.run_id]
    assert copy.data.params["model.backbone._target_"] == "wine_lab.backbone.ResidualMLP"
    assert copy.data.tags["explab.searchpath"] == source.data.tags["explab.searchpath"], "a reproduction keeps it"
    chosen = {k: v for k, v in copy.data.tags.items() if k.startswith("explab.choice.")}
    assert chosen == {k: v for k, v in source.data.tags.items() if k.startswith("explab.choice.")}
    assert chosen["explab.choice.experiment"] == "wine_resmlp", "not the default experiment of the command"

    moved = lab.rename(tmp_path / "moved")
    # its logged model carries the lab's code, and takes the features as numbers in their units: it predicts
    # with the lab neither where it trained nor on PYTHONPATH
    np.save(tmp_path / "wine.npy", load_wine().data[:5])
    predict = [f"model_uri=runs:/{source.info.run_id}/model", f"input={tmp_path}/wine.npy", *outputs]
    predicted = run_cli("explab-predict", *predict, f"output={tmp_path}/out.csv", cwd=tmp_path, env={"PYTHONPATH": ""})
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 5

    refused = reproduce(copy.info.run_id, code=moved)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"Error: run {copy.info.run_id} composed its config with hydra.searchpath=['file://{lab.resolve()}/conf'], "
        f"and {lab.resolve()}/conf is no longer a folder here: give the folder that holds those configs now, "
        "hydra.searchpath=[file://PATH]"
    ), refused.stderr[-3000:]
    assert len(runs_in(tmp_path / "mlruns", "wine_resmlp")) == 2, "refused before a run exists"

    given = reproduce(copy.info.run_id, "hydra.searchpath=[file://moved/conf]", code=moved)
    assert given.returncode == 0, given.stderr[-3000:]
    [latest] = [
        r
        for r in runs_in(tmp_path / "mlruns", "wine_resmlp")
        if r.info.run_id not in (source.info.run_id, copy.info.run_id)
    ]
    assert latest.data.tags["explab.searchpath"] == f"['file://{moved.resolve()}/conf']"


@pytest.mark.slow
def test_a_labs_model_logged_without_its_code_names_the_package_and_where_to_put_it(tmp_path: Path) -> None:
    """A model logged before models carried their lab's code (no ``code`` folder, no ``code:`` in its MLmodel)
    failed to load away from the lab with Hydra's bare "Error locating target 'wine_lab.backbone.ResidualMLP'"."""
    assert explab_train_in_lab(tmp_path, "trainer.max_epochs=1").returncode == 0
    [model] = (tmp_path / "mlruns" / "artifacts" / "models").glob("*/artifacts")
    shutil.rmtree(model / "code")
    described = (model / "MLmodel").read_text()
    assert "    code: code\n" in described
    (model / "MLmodel").write_text(described.replace("    code: code\n", ""))
    [run] = runs_in(tmp_path / "mlruns", "wine_resmlp")
    np.save(tmp_path / "wine.npy", load_wine().data[:5])
    predict = [
        f"model_uri={run.info.run_id}",
        f"input={tmp_path}/wine.npy",
        f"output={tmp_path}/out.csv",
        f"paths.mlruns_dir={tmp_path}/mlruns",
    ]

    refused = run_cli("explab-predict", *predict, cwd=tmp_path, env={"PYTHONPATH": ""})
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "Error: the model's network cannot be rebuilt here: model.backbone._target_=wine_lab.backbone.ResidualMLP "
        "cannot be imported: there is no module named 'wine_lab'. Install the package that holds it (pip install "
        "-e its folder), or put the folder that holds wine_lab/ on PYTHONPATH"
    ), refused.stderr[-3000:]
    assert not (tmp_path / "out.csv").exists()

    given = run_cli("explab-predict", *predict, cwd=tmp_path, env={"PYTHONPATH": str(LAB)})
    assert given.returncode == 0, given.stderr[-3000:]
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 5


@pytest.mark.slow
def test_a_labs_model_logged_with_a_float32_signature_predicts_from_explabs_float64_inputs(tmp_path: Path) -> None:
    """explab logged a lab's model with a float32 signature before it logged float64 ones; explab-predict reads
    numbers as float64, which MLflow refused ("dtype of input float64 does not match expected dtype float32").
    Its predictions are the same as with the float64 signature."""
    assert explab_train_in_lab(tmp_path, "trainer.max_epochs=1").returncode == 0
    [run] = runs_in(tmp_path / "mlruns", "wine_resmlp")
    np.save(tmp_path / "wine.npy", load_wine().data[:5])

    def predict(output: str) -> Path:
        args = [f"model_uri={run.info.run_id}", f"input={tmp_path}/wine.npy", f"paths.mlruns_dir={tmp_path}/mlruns"]
        args.append(f"paths.log_dir={tmp_path}/logs")
        done = run_cli("explab-predict", *args, f"output={tmp_path}/{output}", cwd=LAB, env={"PYTHONPATH": str(LAB)})
        assert done.returncode == 0, done.stderr[-3000:]
        return tmp_path / output

    as_logged = predict("float64.csv").read_text()
    [model] = (tmp_path / "mlruns" / "artifacts" / "models").glob("*/artifacts")
    described = (model / "MLmodel").read_text()
    declared = '{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 13]}}'
    assert declared in described
    (model / "MLmodel").write_text(described.replace(declared, declared.replace("float64", "float32")))
    assert predict("float32.csv").read_text() == as_logged
    assert len(as_logged.splitlines()) == 1 + 5

    # a lab's data module without an input recipe logs a model that takes its tensors as they are, of a shape
    # only its signature knows: a table with one column more was answered with MLflow's error quoting every input
    (model / "artifacts" / "recipe.json").write_text('{"kind": "tensor", "dtype": "float32"}')
    load_wine(as_frame=True).frame.head(5).to_csv(tmp_path / "with_target.csv", index=False)
    args = [f"model_uri={run.info.run_id}", f"input={tmp_path}/with_target.csv", f"paths.mlruns_dir={tmp_path}/mlruns"]
    args += [f"paths.log_dir={tmp_path}/logs", f"output={tmp_path}/out.csv"]
    refused = run_cli("explab-predict", *args, cwd=LAB, env={"PYTHONPATH": str(LAB)})
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"Error: input={tmp_path}/with_target.csv: the model refuses these inputs: Shape of input (5, 14) does not "
        "match expected shape (-1, 13). It takes [Tensor('float32', (-1, 13))]"
    ), refused.stderr[-3000:]


@pytest.mark.slow
def test_a_labs_code_edited_while_its_run_trains_is_named_as_the_model_carries_it(tmp_path: Path) -> None:
    """The logged model copies the lab's package as its files are when the run ends: edited during a long fit,
    the model carried code its weights were not trained with (here another activation, the same parameters:
    it loads, and predicts otherwise), and nothing said so."""
    lab = tmp_path / "lab"
    shutil.copytree(LAB, lab, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    git = ["git", "-c", "user.name=lab", "-c", "user.email=lab@example.org"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "the lab's recipe"]):
        subprocess.run([*git, *args], cwd=lab, check=True, capture_output=True)
    train = [
        "hydra.searchpath=[file://conf]",
        "experiment=wine_resmlp",
        "trainer.max_epochs=1",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        f"paths.log_dir={tmp_path}/logs",
    ]
    env = {"PYTHONPATH": f"{lab}:{ROOT}"}  # the suite's callbacks, beside the lab
    done = run_cli("explab-train", *train, "seed=1", cwd=lab, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    edit = [
        "+callbacks.edit._target_=tests.support.callbacks.EditFileAtFitEnd",
        f"+callbacks.edit.path={lab}/wine_lab/backbone.py",
        "+callbacks.edit.old=GELU",
        "+callbacks.edit.new=SiLU",
    ]
    edited = run_cli("explab-train", *train, "seed=2", *edit, cwd=lab, env=env)
    assert edited.returncode == 0, edited.stderr[-3000:]

    runs = sorted(runs_in(tmp_path / "mlruns", "wine_resmlp"), key=lambda r: r.data.params["seed"])
    assert "explab.model_code_moved" not in runs[0].data.tags
    assert runs[1].data.tags["explab.model_code_moved"] == "wine_lab"
    assert runs[1].data.tags["git.wine_lab.dirty"] == "false", "trained from the commit"
    said = (
        "wine_lab changed in its checkout since this run imported it (a commit or an edit): the logged model "
        "carries it as it is now, which may not be the code its weights were trained with. The run's "
        "git.wine_lab.* tags (and config/git_diff.wine_lab.patch, if any) record the code that trained; with "
        f"that code checked out, explab-train reproduce={runs[1].info.run_id} logs a model that matches it"
    )
    assert said in edited.stdout, edited.stdout[-3000:]
    assert "changed in its checkout" not in done.stdout
