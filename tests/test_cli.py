"""The console scripts as a user runs them: exit codes, messages, and the store they leave behind."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import run_cli, run_reporting_imports, runs_in, tracking_uri_for

NO_RUN = "0123456789abcdef0123456789abcdef"  # a well-formed run id no store holds


def common(tmp_path: Path) -> list[str]:
    return [f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs"]


def test_bad_key_names_it_and_suggests_the_right_one(tmp_path: Path) -> None:
    done = run_cli("explab-train", "trainer.max_epoch=3", *common(tmp_path), cwd=tmp_path)
    assert done.returncode != 0
    assert "trainer.max_epoch" in done.stderr
    assert "Did you mean: trainer.max_epochs" in done.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists(), "no run for a config that does not compose"


def test_adding_a_key_the_config_has_is_answered_with_the_override_that_changes_it(tmp_path: Path) -> None:
    """``+trainer.log_every_n_steps=0`` was answered "Did you mean: trainer.log_every_n_steps ... To add a new
    key on purpose, write +trainer.log_every_n_steps=...", the command just given."""
    done = run_cli("explab-train", "+trainer.log_every_n_steps=10", *common(tmp_path), cwd=tmp_path)
    assert done.returncode != 0
    said = (
        "trainer.log_every_n_steps is in the config already: change it without the +, 'trainer.log_every_n_steps=10'."
    )
    assert done.stderr.rstrip().endswith(said), done.stderr[-800:]
    assert "To add a new key on purpose" not in done.stderr
    # a group: Hydra answered with the defaults list's syntax, "use 'override optimizer: sgd'"
    done = run_cli("explab-train", "+optimizer=sgd", *common(tmp_path), cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.rstrip().endswith(
        "optimizer is chosen already (adam): choose another without the +, 'optimizer=sgd'."
    )
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("override", "said"),
    [
        (
            "scheduler=null",
            "Error: scheduler=null: scheduler is a config group and takes an option's name; scheduler=none leaves it",
        ),
        (
            "optimizer=null",
            "optimizer is a config group and takes an option's name; give one of its options: adam, adamw,",
        ),
    ],
)
def test_a_config_group_given_null_is_answered_with_its_options(tmp_path: Path, override: str, said: str) -> None:
    """Hydra answered ``scheduler=null`` with a traceback ("Config group override must be a string or a list")."""
    done = run_cli("explab-train", override, *common(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert said in done.stderr, done.stderr[-800:]
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("module", "config_name"),
    [("explab.train", "train"), ("explab.eval", "eval"), ("explab.report", "report"), ("explab.predict", "predict")],
)
def test_commands_that_train_nothing_do_not_import_torch(tmp_path: Path, module: str, config_name: str) -> None:
    """`--cfg job`, `--help` and a mistyped override are answered by Hydra before the job runs; importing torch
    and Lightning for them would cost seconds each time."""
    done = run_reporting_imports(module, [f"explab-{config_name}", "--cfg", "job"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "_target_" in done.stdout or "experiment_name" in done.stdout, done.stdout[-2000:]
    assert "imported: []" in done.stdout, done.stdout[-500:]
    assert "frozen before teardown: True" in done.stdout, "the command skips the interpreter's last collections"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("optimizer.lr=abc", "optimizer.lr must be a number > 0"),
        ("data.batch_size=???", "data.batch_size has no value (???)"),
        ("data.val_fraction=0.6 data.test_fraction=0.5", "data.test_fraction must be below 0.4"),
        ("trainer.precision=bf17", "trainer.precision must be auto, 32-true, bf16-mixed"),
        # without -m Hydra runs no sweeper: this trained one run, and searched nothing
        ("hparams_search=digits_optuna", "a search runs only as a multirun: add -m (explab-train -m hparams_search="),
    ],
)
def test_a_wrong_value_is_answered_before_torch_is_imported(tmp_path: Path, bad: str, message: str) -> None:
    argv = ["explab-train", *bad.split(), *common(tmp_path)]
    done = run_reporting_imports("explab.train", argv, tmp_path)
    assert done.returncode == 1 and message in done.stderr, done.stderr[-2000:]
    assert "imported: []" in done.stdout, done.stdout[-500:]
    assert "frozen before teardown: True" in done.stdout, "the command skips the interpreter's last collections"
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("module", "argument", "message"),
    [
        ("explab.eval", f"run_id={NO_RUN}", f"no MLflow run {NO_RUN} in sqlite:///"),
        ("explab.eval", "ckpt_path=gone.ckpt", "checkpoint gone.ckpt does not exist"),
        ("explab.train", f"resume={NO_RUN}", f"no MLflow run {NO_RUN} in sqlite:///"),
        ("explab.train", f"reproduce={NO_RUN}", f"no MLflow run {NO_RUN} in sqlite:///"),
    ],
)
def test_a_run_or_checkpoint_that_is_not_there_is_answered_before_torch_is_imported(
    tmp_path: Path, module: str, argument: str, message: str
) -> None:
    """A mistyped run id or checkpoint path is named in the seconds MLflow takes to import, not the seconds
    torch and Lightning add: the store exists, it just lacks the run."""
    MlflowClient(tracking_uri_for(tmp_path / "mlruns")).search_experiments()
    command = f"explab-{module.rpartition('.')[2]}"
    done = run_reporting_imports(module, [command, argument, *common(tmp_path)], tmp_path)
    assert done.returncode == 1 and message in done.stderr, done.stderr[-2000:]
    assert "imported: []" in done.stdout, done.stdout[-500:]


@pytest.mark.parametrize("mode", ["resume", "reproduce"])
def test_a_run_id_that_names_no_run_is_answered_before_torch_is_imported(tmp_path: Path, mode: str) -> None:
    argv = ["explab-train", f"{mode}=0123456789abcdef", *common(tmp_path)]
    done = run_reporting_imports("explab.train", argv, tmp_path)
    assert done.returncode == 1 and "There is no MLflow store at " in done.stderr, done.stderr[-2000:]
    assert "imported: []" in done.stdout, done.stdout[-500:]
    assert "frozen before teardown: True" in done.stdout, "the command skips the interpreter's last collections"


def test_unknown_group_option_lists_the_choices(tmp_path: Path) -> None:
    done = run_cli("explab-train", "optimizer=adamm", *common(tmp_path), cwd=tmp_path)
    assert done.returncode != 0
    assert "Could not find 'optimizer/adamm'" in done.stderr
    assert "adamw" in done.stderr and "rmsprop" in done.stderr
    assert done.stderr.rstrip().endswith("Did you mean: optimizer=adam, optimizer=adamw?"), done.stderr[-500:]


@pytest.mark.parametrize(
    ("command", "override", "composes"),
    [("explab-predict", "experiment=digits_cnn", "paths"), ("explab-eval", "model=cnn", "paths, trainer")],
)
def test_a_group_the_command_does_not_compose_is_named_as_such(
    tmp_path: Path, command: str, override: str, composes: str
) -> None:
    """Hydra's answer, "use +experiment=...", would merge a whole experiment into a config the command ignores."""
    done = run_cli(command, override, "run_id=0123", "model_uri=runs:/0123/model", "input=.", cwd=tmp_path)
    group = override.partition("=")[0]
    advice = f"{command} has no config group '{group}': it composes {composes} ({command} --help lists its settings)."
    assert done.returncode == 1 and done.stderr.rstrip().endswith(advice), done.stderr[-1000:]


def test_the_multirun_flag_may_follow_the_overrides(tmp_path: Path) -> None:
    """Hydra's argparse refused ``explab-train seed=1,2 -m experiment=...`` as "unrecognized arguments"."""
    done = run_cli("explab-train", "seed=1,2", "-m", "experiment=mnist_cnnn", *common(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "unrecognized arguments" not in done.stderr, done.stderr[-2000:]
    assert (
        "Could not find 'experiment/mnist_cnnn'" in done.stderr and "Did you mean: experiment=mnist_cnn," in done.stderr
    )
    assert runs_in(tmp_path / "mlruns", "mnist_cnn") == []


@pytest.mark.slow
def test_a_multirun_is_announced_once_as_hydras_own_sweeper_announces_it(tmp_path: Path) -> None:
    """Each job, handed to Hydra's launcher alone (so that a failed job's frames go before the next trains), was
    preceded by "Launching 1 jobs locally"."""
    train = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "log_model=false", "log_plots=false"]
    done = run_cli("explab-train", "-m", "seed=1,2,3", *train, *common(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    assert said.count("Launching 3 jobs locally") == 1 and "Launching 1 jobs locally" not in said, said[-3000:]
    assert [int(n) for n in re.findall(r"\t#(\d) : seed=", said)] == [0, 1, 2], "each job's own line stays"


def test_a_recipes_file_path_for_its_option_is_answered_with_its_name(tmp_path: Path) -> None:
    done = run_cli("explab-train", "experiment=experiments/digits_cnn.yaml", *common(tmp_path), cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.rstrip().endswith("Give the option's name, not its file: experiment=digits_cnn")


def test_hydras_own_settings_show_resolved(tmp_path: Path) -> None:
    """Hydra resolved ``--cfg hydra`` apart from the job's config, whose paths.log_dir the run folder takes."""
    done = run_cli("explab-train", "--cfg", "hydra", "--resolve", f"paths.log_dir={tmp_path}/logs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"  dir: {tmp_path}/logs/digits_cnn/runs/" in done.stdout and "${" not in done.stdout, done.stdout[:500]
    done = run_cli(
        "explab-train",
        "hparams_search=digits_optuna",
        "--cfg",
        "hydra",
        "-p",
        "hydra.sweeper",
        "--resolve",
        cwd=tmp_path,
    )
    assert done.returncode == 0 and "metric: val/acc_best" in done.stdout, done.stderr[-2000:]


def test_an_option_between_overrides_is_taken_as_if_it_came_first(tmp_path: Path) -> None:
    done = run_cli("explab-train", "experiment=mnist_cnn", "--cfg", "job", "seed=2", "--resolve", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"experiment_name: mnist_cnn", "seed: 2"} <= set(done.stdout.splitlines()), done.stdout[:500]
    assert "${" not in done.stdout, "--resolve, given last, still resolves"


def test_a_list_of_overrides_left_unquoted_is_answered_with_the_quoted_form(tmp_path: Path) -> None:
    done = run_cli("explab-eval", "run_id=abc", "config_overrides=[data.data_dir=/x,seed=1]", cwd=tmp_path)
    assert done.returncode != 0
    quoted = """'config_overrides=["data.data_dir=/x"]'"""
    assert f"Quote each item that holds '=', and the whole argument for the shell: {quoted}" in done.stderr


def test_a_search_space_given_under_hydras_node_is_answered_with_the_override_that_works(tmp_path: Path) -> None:
    space = "hydra.sweeper.params.optimizer.lr=tag(log,interval(1e-4,1e-1))"
    done = run_cli("explab-train", "-m", "hparams_search=digits_optuna", space, *common(tmp_path), cwd=tmp_path)
    assert done.returncode != 0
    assert "Sweeping over Hydra's configuration is not supported" in done.stderr, "Hydra's own message"
    assert "give its space as a sweep override of the key itself: 'optimizer.lr=tag(log,interval(1e-4,1e-1))'" in (
        done.stderr
    )


@pytest.mark.slow
def test_a_missing_mandatory_value_is_named_before_any_run(tmp_path: Path) -> None:
    done = run_cli("explab-train", "data.batch_size=???", *common(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "Error: data.batch_size has no value (???): give data.batch_size=... on the command line" in done.stderr
    assert runs_in(tmp_path / "mlruns", "digits_cnn") == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((), "explab-report needs experiment_name=... on its command line, for example: explab-report experiment="),
        (("explab-predict",), "explab-predict needs model_uri=... and input=... on its command line, for example: "),
        (("explab-predict", "model_uri=abc"), "explab-predict needs input=... on its command line"),
        (("explab-eval",), "explab-eval needs run_id=<MLflow run id> or ckpt_path=<path to a .ckpt file>"),
    ],
)
def test_a_command_without_the_value_it_needs_says_which_and_shows_an_example(
    tmp_path: Path, arguments: tuple[str, ...], message: str
) -> None:
    """They ended in a traceback; explab-report's, inside Hydra's formatting of its own error."""
    done = run_cli(*(arguments or ("explab-report",)), cwd=tmp_path, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"Error: {message}" in done.stderr


@pytest.mark.slow
def test_default_experiment_reaches_97_percent(tmp_path: Path) -> None:
    """What `make train` runs, in a subprocess with the default config."""
    done = run_cli("explab-train", "trainer.enable_progress_bar=false", *common(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FINISHED" in done.stderr + done.stdout
    assert "Tip:" not in done.stderr + done.stdout, "Lightning's litlogger/litmodels adverts are dropped"
    assert "prepend your python command with `srun`" not in done.stderr, "explab reaches SLURM by its launcher"
    assert "LeafSpec" not in done.stderr, "Lightning's call into torch's deprecated pytree API is not news"
    said = done.stderr + done.stdout
    assert "system metrics" not in said and "Validating input example" not in said, "nor is MLflow narrating"
    # printed through the same Lightning logger as the tips, however the fit ends (early stopping or max_epochs)
    for message in ("Seed set to", "GPU available:"):  # the first message, and one from the Trainer
        assert (done.stderr + done.stdout).count(message) == 1, f"Lightning's other messages show, once: {message}"
    assert not (tmp_path / "mlruns" / "mlflow.db-wal").exists(), "the log is back in mlflow.db at exit"
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["test/acc"] >= 0.97


def test_a_multirun_asked_only_to_show_its_config_says_what_to_drop(tmp_path: Path) -> None:
    done = run_cli("explab-train", "-m", "seed=1,2", "--cfg", "job", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "drop -m and give each swept key one value (seed=1,2,3 as seed=1)" in done.stderr


GROUPS_OF = {
    "explab-train": {
        "callbacks", "checkpoint", "data", "experiment", "hparams_search", "logger", "model", "optimizer", "paths",
        "precision", "scheduler", "trainer",
    },
    "explab-eval": {"paths", "trainer"},
    "explab-report": {"paths"},
    "explab-predict": {"paths"},
}  # fmt: skip


@pytest.mark.parametrize("command", ["explab-train", "explab-eval", "explab-report", "explab-predict"])
def test_help_says_what_the_command_does_and_ends_with_examples(tmp_path: Path, command: str) -> None:
    """tests/docs/test_commands.py composes each example, as it does the documents' commands."""
    done = run_cli(command, "--help", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(f"{command}: "), done.stdout[:500]
    assert f"Examples:\n  {command} " in done.stdout, done.stdout[-1500:]
    # the groups this command composes, not every group under conf/: explab-predict offered experiment= and model=
    listed = done.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    groups = {line.split(":")[0] for line in listed.splitlines() if ": " in line and "(group=option)" not in line}
    assert groups == GROUPS_OF[command], listed


@pytest.mark.parametrize(
    ("command", "folder"),
    [
        (["explab-train", "trainer.max_epochs=1"], "runs"),
        (["explab-train", "-m", "seed=1,2", "trainer.max_epochs=1"], "multiruns"),
        (["explab-report", "experiment_name=digits_cnn"], "runs"),
    ],
)
def test_a_job_folder_under_a_read_only_folder_is_refused_before_hydra_makes_it(
    tmp_path: Path, read_only, command: list[str], folder: str
) -> None:
    """Hydra created the job's folder before any of explab's code ran, and ended in a traceback."""
    share = read_only(tmp_path)
    done = run_cli(*command, f"paths.log_dir={share}/logs", f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"Error: The job's folder {share}/logs/digits_cnn/{folder}/" in done.stderr
    assert f"cannot be created: {share} is on a read-only file system" in done.stderr
    assert "paths.log_dir=FOLDER" in done.stderr and not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(
    ("command", "folder"),
    [(["explab-train", "trainer.max_epochs=1"], "runs"), (["explab-train", "-m", "seed=1,2"], "multiruns")],
)
def test_a_job_folder_on_a_full_disk_is_refused_before_hydra_writes_its_config(
    tmp_path: Path, small_disk, command: list[str], folder: str
) -> None:
    """Hydra wrote the job's config files before any of explab's code ran, and ended in a traceback of
    "No space left on device"."""
    disk, resize = small_disk
    resize(256)
    done = run_cli(*command, f"paths.log_dir={disk}/logs", f"paths.mlruns_dir={tmp_path}/mlruns", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert re.search(
        rf"Error: The job's folder {disk}/logs/digits_cnn/{folder}/\S+ has no room: its disk has 25\d KiB free, too "
        "little for the job's config files and checkpoints. Free space there, or give a folder on another disk: "
        r"paths.log_dir=FOLDER \(or paths.root_dir=FOLDER",
        done.stderr,
    ), done.stderr[-2000:]
    assert not (tmp_path / "mlruns").exists(), "nothing ran"


def test_relative_folders_are_the_launch_folders_when_a_job_works_in_its_own(tmp_path: Path) -> None:
    """With ``hydra.job.chdir=true`` a job works in its output folder, and ``paths.mlruns_dir=store`` was read
    from there: each run kept a store of its own inside its job folder, which explab-report, run from where the
    command was typed, never found."""
    relative = ["paths.log_dir=logs", "paths.mlruns_dir=store", "hydra.job.chdir=true"]
    done = run_cli("explab-train", "trainer.max_epochs=1", "+trainer.limit_train_batches=2", *relative, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = runs_in(tmp_path / "store", "digits_cnn")
    assert run.data.params["paths.mlruns_dir"] == str(tmp_path / "store"), "recorded as the folder it was"
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("mlflow.db")] == [Path("store/mlflow.db")]
    report = run_cli("explab-report", "experiment_name=digits_cnn", *relative, cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "test/acc" in report.stdout, report.stdout[-2000:]
    # a relative checkpoint or input was not found from the job's folder, and predictions were written there
    from sklearn.datasets import load_digits

    (checkpoint,) = (p.relative_to(tmp_path) for p in (tmp_path / "logs").rglob("epoch_000.ckpt"))
    tested = run_cli("explab-eval", f"ckpt_path={checkpoint}", *relative, cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-2000:]
    np.save(tmp_path / "digits.npy", load_digits().images[:3])
    predicted = run_cli(
        "explab-predict", f"model_uri={run.info.run_id}", "input=digits.npy", "output=out.csv", *relative, cwd=tmp_path
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 4, "written where the command was typed"
