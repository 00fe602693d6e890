"""Shared fixtures: real Hydra composition, a real SQLite MLflow store under tmp_path, no mocks."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from explab.config import config_dir

BIN = Path(sys.executable).parent
ROOT = Path(__file__).parents[1]
HYDRA_APPS = ("explab-train", "explab-eval", "explab-report", "explab-predict")
# the machine's temporary folder, before the suite moves $TMPDIR under pytest's own (mode 0700, root's alone)
MACHINE_TEMP = tempfile.gettempdir()

# `make test` runs a pytest worker per core, each starting training processes: torch's default of a thread per
# core would put several threads on each core, where OpenMP's waiting threads spin. One thread per process,
# unless a test or the developer sets another (sweep workers and CPU DDP ranks set theirs explicitly).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def as_from_a_terminal() -> None:
    """``preexec_fn`` of a child that a test stops with Ctrl-C: SIGINT as a terminal leaves it. A suite that a
    non-interactive shell started in the background has SIGINT ignored, and its children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def root_env() -> dict[str, str]:
    """This environment for subprocesses that load the suite's helpers (``tests.support``) from the checkout."""
    return {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "PYTHONPATH": str(ROOT)}


def in_a_container(command: Sequence[str]) -> list[str]:
    """``command`` in a PID namespace of its own on this host, under its name, as Docker or ``apptainer --pid``
    run it: there it is pid 1. Killing the returned command kills it (root only)."""
    return ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", *command]


def _checkout_outputs() -> set[Path]:
    return {path for folder in ("mlruns", "logs") for path in (ROOT / folder).glob("*")}


@pytest.fixture(scope="session", autouse=True)
def _checkout_stays_clean():
    """No test writes into the checkout's ``mlruns/`` or ``logs/``: MLflow puts an experiment created without
    an artifact location under ``./mlruns`` of the working directory, and Hydra a job folder under the
    project's ``logs/``."""
    before = _checkout_outputs()
    yield
    leaked = sorted(str(path.relative_to(ROOT)) for path in _checkout_outputs() - before)
    assert not leaked, f"tests wrote into the checkout: {leaked}"


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_basetemp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Temporary files of the suite and of every process it starts go under pytest's own temporary folder,
    which pytest prunes after a few runs, not into the machine's ``/tmp``: MLflow keeps a copy of whatever it
    downloads without a destination (``mlflow.pyfunc.load_model``, ``mlflow models serve``, which some tests
    call as a researcher would) and a lock file per new SQLite store."""
    folder = str(tmp_path_factory.mktemp("tmpdir"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", folder)  # the processes tests start
        patch.setattr(tempfile, "tempdir", folder)  # this one, which read $TMPDIR once already
        yield


@pytest.fixture(autouse=True)
def _isolated_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write to the developer's store or a server named in the environment."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    mlruns = tmp_path / "mlruns"
    mlruns.mkdir()
    return mlruns


def tracking_uri_for(mlruns: Path) -> str:
    return f"sqlite:///{mlruns}/mlflow.db"


def _defaults(config_name: str) -> list[str]:
    # logging the model costs about a second a run; the tests of model logging turn it back on
    return ["log_model=false"] if config_name == "train" else []


@pytest.fixture
def compose_cfg(tmp_path: Path, store: Path) -> Callable[..., DictConfig]:
    """Compose a root config as Hydra would, with every output under tmp_path and each job's in a folder of its
    own (``out``, ``out-1``, ...), as Hydra gives each run."""
    composed = itertools.count()

    def _compose(*overrides: str, config_name: str = "train") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose(
                config_name,
                overrides=[
                    f"paths.mlruns_dir={store}",
                    f"paths.log_dir={tmp_path}/logs",
                    *_defaults(config_name),
                    *overrides,
                ],
                return_hydra_config=True,
            )
        number = next(composed)
        output_dir = tmp_path / ("out" if number == 0 else f"out-{number}")
        output_dir.mkdir(exist_ok=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300, account: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run a console script of this environment as a user would; a Hydra app's job folder goes under ``cwd``
    unless the arguments place it. ``account`` is a command that runs it, as ``another_account`` gives."""
    if args[0] in HYDRA_APPS and not any(a.startswith(("paths.log_dir=", "paths.root_dir=")) for a in args):
        args = (*args, f"paths.log_dir={cwd}/logs")  # not the checkout's logs/, which the suite would fill
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update(env or {})
    return subprocess.run(
        [*account, str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_reporting_imports(module: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``module``'s console script with ``argv``; its output ends with the heavy modules it imported
    and whether its objects were frozen for the interpreter's teardown."""
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('imported:', sorted(m for m in ('torch', 'lightning') if m in sys.modules)))\n"
        "atexit.register(lambda: print('frozen before teardown:', gc.get_freeze_count() > 0))\n"
        f"sys.argv = {argv!r}\n"
        f"from {module} import main\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=False)


def runs_in(mlruns: Path, experiment: str) -> list:
    """Every run of ``experiment`` in the store under ``mlruns`` (empty when there is none)."""
    from explab.tracking.store import open_client

    client = open_client(tracking_uri_for(mlruns))  # waits while a training process creates the store
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id], max_results=1000)


@pytest.fixture
def logged_run(compose_cfg, store: Path) -> str:
    """A short digits run with its MLflow model logged; returns its run id."""
    from explab.train import train

    train(compose_cfg("log_model=true", "trainer.max_epochs=3", "trainer.enable_progress_bar=false"))
    [run] = runs_in(store, "digits_cnn")
    return run.info.run_id


@pytest.fixture
def read_only(tmp_path) -> Iterator[Callable[[Path], Path]]:
    """``read_only(folder)``: the folder seen through a read-only bind mount (a colleague's results, a
    read-only share), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount is made as root (CI runs as root)")
    mounts: list[Path] = []

    def mount(folder: Path) -> Path:
        view = tmp_path / f"read-only-{len(mounts)}"
        view.mkdir()
        done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(view)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"this machine makes no bind mounts: {done.stderr.decode().strip()}")
        mounts.append(view)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)  # older mounts ignore ro above
        return view

    try:
        yield mount
    finally:
        for view in mounts:
            subprocess.run(["umount", "--lazy", str(view)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, Callable[[int], None]]]:
    """A tmpfs of its own, and how to set its size in KiB; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("a file system of a chosen size is mounted as root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"this machine mounts no tmpfs: {mounted.stderr.decode().strip()}")

    def resize(kib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(disk)], check=True)

    try:
        yield disk, resize
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


@pytest.fixture
def another_account() -> list[str]:
    """The command that runs a command as root without its power over file permissions: as another account
    would, for files root made and gave to ``nobody`` (a colleague's, in a shared folder)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("files of another account are made as root and read with setpriv (CI runs as root)")
    without = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={without}", f"--bounding-set={without}", "--"]
