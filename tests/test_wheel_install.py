"""explab installed from its wheel, as a lab installs it into its own environment: no checkout, no Makefile.

The wheel is built from this checkout and installed into a new virtual environment; its dependencies come from
the suite's own environment (a ``.pth`` line), so nothing is downloaded, less the packages of explab's optional
extras, which ``pip install explab`` leaves out too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT
from tests.support.network import free_port, wait_until_answering

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin/`` folder of a new environment with explab's wheel installed."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(folder / "dist"), str(ROOT)], check=True
    )
    [wheel] = (folder / "dist").glob("explab-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "env")], check=True)
    python = folder / "env" / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)], check=True
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True
    ).stdout.strip()
    Path(site, "suite_dependencies.pth").write_text(str(_without_extras(folder / "dependencies")) + "\n")
    return folder / "env" / "bin"


# what the slurm and postgres extras install: their packages in site-packages, each with its .dist-info
EXTRAS_PACKAGES = (
    "hydra_plugins/hydra_submitit_launcher", "hydra_submitit_launcher", "submitit", "psycopg", "psycopg_binary"
)  # fmt: skip


def _without_extras(folder: Path) -> Path:
    """``folder``: links to the suite's site-packages, less ``EXTRAS_PACKAGES``."""
    _link_all_but(Path(sysconfig.get_path("purelib")), folder, set(EXTRAS_PACKAGES))
    return folder


def _link_all_but(source: Path, target: Path, left_out: set[str]) -> None:
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if any(entry.name == name or entry.name.startswith((f"{name}-", f"{name}.")) for name in left_out):
            continue
        inside = {name.partition("/")[2] for name in left_out if name.startswith(f"{entry.name}/")}
        if inside:
            _link_all_but(entry, target / entry.name, inside)
        else:
            (target / entry.name).symlink_to(entry)


def _env(bin_dir: Path) -> dict[str, str]:
    """The new environment's commands first; then the suite's, for ``mlflow``, which a full install would have
    put beside explab's."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    return {**env, "PATH": os.pathsep.join([str(bin_dir), str(BIN), env["PATH"]])}


def _train(
    installed: Path, *arguments: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The new environment's ``explab-train`` run in ``cwd``, with ``env`` added to its environment."""
    return subprocess.run(
        [str(installed / "explab-train"), *arguments],
        cwd=cwd,
        env={**_env(installed), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_wheel_install_trains_in_its_folder_and_names_a_ui_command_that_serves_the_run(
    installed: Path, tmp_path: Path
) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    trained = _train(installed, "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "log_model=false", cwd=lab)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (lab / "mlruns" / "mlflow.db").is_file(), "the store is the working folder's, from the packaged configs"
    found = re.search(
        r"MLflow run (\w+) FINISHED .*UI: (.+?), then http://127\.0\.0\.1:5000/", trained.stdout + trained.stderr
    )
    assert found, (trained.stdout + trained.stderr)[-3000:]
    run_id, serve = found.groups()
    assert serve == f"mlflow ui --backend-store-uri sqlite:///{lab.resolve()}/mlruns/mlflow.db", (
        "no make ui without a Makefile"
    )

    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [*serve.split(), "--port", str(port)],
            cwd=tmp_path,
            env=_env(installed),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the UI's workers stop with it
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{base}/health", server, log.read_text)
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}", timeout=30) as answer:
            run = json.load(answer)["run"]
        assert run["info"]["status"] == "FINISHED"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_a_wheel_install_keeps_its_store_in_the_launch_folder_when_jobs_work_in_their_own(
    installed: Path, tmp_path: Path
) -> None:
    """A wheel install's project is the folder the command starts in; under ``hydra.job.chdir=true`` that was
    read as the job's own output folder, so each run made a store inside its job folder."""
    trained = _train(installed, "trainer=fast_dev_run", "hydra.job.chdir=true", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("mlflow.db")] == [Path("mlruns/mlflow.db")]


@pytest.mark.parametrize(
    ("arguments", "store", "message"),
    [
        (
            ["-m", "hparams_search=digits_optuna", "hydra/launcher=slurm"],
            None,
            "hydra/launcher=slurm submits through hydra-submitit-launcher, which this environment lacks: "
            "pip install 'explab[slurm]'",
        ),
        (
            ["-m", "hparams_search=digits_optuna", "hydra.sweeper.storage=postgresql://lab@127.0.0.1/optuna"],
            None,
            "the study's storage postgresql://lab@127.0.0.1/optuna needs the database driver psycopg, which this "
            "environment lacks: pip install 'explab[postgres]'",
        ),
        (
            [],
            "postgresql://lab:s3cret@127.0.0.1/mlflow",
            "The MLflow tracking store postgresql://lab:***@127.0.0.1/mlflow needs the database driver psycopg, "
            "which this environment lacks: pip install 'explab[postgres]'",
        ),
    ],
)
def test_a_setting_that_needs_an_extra_names_the_extra_to_install(
    installed: Path, tmp_path: Path, arguments: list[str], store: str | None, message: str
) -> None:
    done = _train(installed, *arguments, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": store} if store else {})
    assert done.returncode == 1 and message in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "s3cret" not in done.stdout + done.stderr
    assert not (tmp_path / "mlruns").exists(), "refused before a study or a run was made"
