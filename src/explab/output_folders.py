"""A Hydra callback that refuses a job folder nobody can create before Hydra tries to.

Hydra creates the run's (or multirun's) folder before the job's code runs, so ``paths.log_dir`` (or
``paths.root_dir``) under a read-only or another account's folder ended in Hydra's traceback of the
``PermissionError``. Every command's ``hydra/default.yaml`` lists this callback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from explab.errors import UsageError


class WritableJobFolder(Callback):
    """Before a run (``hydra.run.dir``) or a multirun (``hydra.sweep.dir``) starts: its folder must be one
    this account can create, or the command exits with one line naming the folder and the setting to change."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config, "hydra.sweep.dir")


def _check(config: DictConfig, key: str) -> None:
    from explab.cli import exit_with_message
    from explab.utils.folders import unwritable

    try:
        folder = Path(str(OmegaConf.select(config, key))).absolute()
    except Exception:  # a value that does not resolve: Hydra says so itself, as before
        return
    refused = unwritable(folder)
    if refused is not None:
        nearest, why = refused
        exit_with_message(
            UsageError(
                f"The job's folder {folder} cannot be created: {nearest} is {why}. Give a folder you can write: "
                "paths.log_dir=FOLDER (or paths.root_dir=FOLDER, which moves the MLflow store as well)"
            )
        )
