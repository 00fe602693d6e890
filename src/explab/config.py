"""Where the configs live, and the OmegaConf resolvers they use.

A source checkout (the usual, editable install) reads ``conf/`` at the project root; a wheel carries a copy
inside the package. ``EXPLAB_CONFIG_DIR`` points elsewhere when a lab keeps its own config tree.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT_ROOT = _PACKAGE_DIR.parents[1]


def config_dir() -> Path:
    """The directory holding ``train.yaml`` and the config groups."""
    override = os.environ.get("EXPLAB_CONFIG_DIR")
    if override:
        return Path(override).resolve()
    checkout = _CHECKOUT_ROOT / "conf"
    if (checkout / "train.yaml").is_file():
        return checkout
    return _PACKAGE_DIR / "conf"


def checkout_root() -> Path | None:
    """The source checkout explab runs from, whose Makefile serves the UI and the team server; None for a
    wheel install."""
    if (_CHECKOUT_ROOT / "Makefile").is_file() and (_CHECKOUT_ROOT / "conf" / "train.yaml").is_file():
        return _CHECKOUT_ROOT
    return None


def project_root() -> Path:
    """The folder that holds ``conf/``, ``mlruns/`` and ``data/``; for a wheel install, the folder the command
    started in."""
    conf = config_dir()
    return conf.parent if conf.parent != _PACKAGE_DIR else launch_folder()


def launch_folder() -> Path:
    """The folder the command started in: Hydra's ``runtime.cwd`` in a Hydra job, whose working folder is its
    output folder under ``hydra.job.chdir=true``; the working folder elsewhere."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.cwd) if HydraConfig.initialized() else Path.cwd()


PATH_KEYS = ("root_dir", "data_dir", "log_dir", "mlruns_dir")  # paths.output_dir is Hydra's, always absolute


def paths_from_launch_folder(cfg: DictConfig, files: tuple[str, ...] = ()) -> None:
    """Make each folder of ``cfg.paths``, and where the job works in another folder each of the command's own
    ``files`` keys that is set (``ckpt_path``, ``input``, ``output``), absolute: a relative one
    (``paths.mlruns_dir=store``) read from the folder the command started in, as the shell that typed it reads it.

    Under ``hydra.job.chdir=true`` a job works in its own output folder: a relative store read from there gave
    each run a store of its own, and failed every trial of a sweep, whose study journal is not there; a relative
    checkpoint or input was not found, and predictions were written inside the job's folder. Absolute, the run
    also records the folders it used, and a later command from another folder finds them.
    """
    launch = launch_folder()
    # the command's own files only where the job works elsewhere: messages then name them as they were typed
    elsewhere = launch.resolve() != Path.cwd().resolve()
    for node, keys in ((cfg.get("paths"), PATH_KEYS), (cfg, files if elsewhere else ())):
        if node is None:
            continue
        given = {key: node.get(key) for key in keys if isinstance(node.get(key), str) and node.get(key)}
        for key, value in given.items():  # all read before any is set: data_dir follows root_dir
            path = Path(value).expanduser()
            node[key] = str(path if path.is_absolute() else launch / path)


def tracking_uri(mlruns_dir: str) -> str:
    """MLflow tracking URI: ``MLFLOW_TRACKING_URI`` if set, else the SQLite store in ``mlruns_dir``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or sqlite_store(mlruns_dir)


def sqlite_store(mlruns_dir: str | Path) -> str:
    """The URI of the SQLite store explab keeps in ``mlruns_dir`` (``mlflow.db``, beside ``artifacts/``)."""
    return f"sqlite:///{Path(mlruns_dir).resolve()}/mlflow.db"


@functools.cache
def process_token() -> str:
    """Six random hex digits, the same for the whole process: two jobs or multiruns started in the same
    second, on one host or several sharing a folder, still get folders of their own. Its resolver caches the
    value in the config, so a multirun's jobs on other hosts (SLURM), which get the launching process's config
    with Hydra's resolver cache, find the same folder."""
    return secrets.token_hex(3)


def config_groups(choices: Any) -> dict[str, list[str]]:
    """The config groups a command composes (``hydra.runtime.choices``), Hydra's own left out, each with its
    options. Hydra's ``$APP_CONFIG_GROUPS`` lists every group on the search path, also those the command does
    not take: ``explab-predict --help`` offered ``experiment`` and ``model``, which only fail there."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.object_type import ObjectType

    if not GlobalHydra.instance().is_initialized():  # a config resolved whole outside Hydra: no help is shown
        return {}
    loader = GlobalHydra.instance().config_loader()
    # with the command line's config and overrides, a lab's hydra.searchpath adds its own options
    where: dict[str, Any] = {}
    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        where = {"config_name": hydra.job.config_name, "overrides": [*hydra.overrides.hydra, *hydra.overrides.task]}
    groups = {}
    for group in sorted(str(name) for name in choices):
        options = sorted(loader.get_group_options(group, results_filter=ObjectType.CONFIG, **where))
        if options and not is_hydra_group(group):
            groups[group] = options
    return groups


def is_hydra_group(group: str) -> bool:
    """Whether ``group`` is Hydra's own (``hydra``, ``hydra/launcher``, ...) rather than one of the job's."""
    return group.split("/")[0] == "hydra"


def config_groups_help(choices: Any) -> str:
    """``group: option, ...`` lines of ``config_groups``, as ``--help`` shows them (``explab.config_groups``)."""
    return "\n".join(f"{group}: {', '.join(options)}" for group, options in config_groups(choices).items())


def register_resolvers() -> None:
    """Idempotently register the ``explab.*`` resolvers used in ``conf/``."""
    resolvers: dict[str, Callable[..., str]] = {
        "explab.project_root": lambda: str(project_root()),
        "explab.tracking_uri": tracking_uri,
        "explab.process_token": process_token,
        "explab.config_groups": config_groups_help,
    }
    cached = {"explab.process_token"}
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=name in cached)


register_resolvers()


def hydra_overrides() -> list[str]:
    """The command-line overrides of this job, when it runs under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def override_key(override: str) -> str:
    """The key an override sets: ``optimizer.lr`` of ``+optimizer.lr=0.1``, ``optimizer`` of ``optimizer=sgd``."""
    return override.lstrip("+~").partition("=")[0]


def overrides_of(overrides: Sequence[str], keys: Any) -> list[str]:
    """The ``overrides`` that set one of ``keys``, as given."""
    return [o for o in overrides if override_key(o) in keys]


def swept_values() -> str | None:
    """``seed=2 optimizer.lr=0.01``: this multirun job's own values of the keys that differ between the
    multirun's jobs (``hydra.sweeper.swept``, which explab's basic sweeper sets), to name its MLflow run by;
    None outside such a multirun."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    swept = set(HydraConfig.get().sweeper.get("swept") or [])
    return " ".join(o.lstrip("+~") for o in overrides_of(hydra_overrides(), swept)) or None
