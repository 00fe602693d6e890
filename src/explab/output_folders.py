"""A Hydra callback that refuses a job folder nobody can create, or one on a full disk, before Hydra tries to.

Hydra creates the run's (or multirun's) folder and writes its config files there before the job's code runs,
so ``paths.log_dir`` (or ``paths.root_dir``) under a read-only or another account's folder, or on a full
disk, ended in Hydra's traceback of the ``PermissionError`` or of "No space left on device". Every command's
``hydra/default.yaml`` lists this callback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from explab.errors import UsageError

OTHER_FOLDER = "paths.log_dir=FOLDER (or paths.root_dir=FOLDER, which moves the MLflow store as well)"
# less than this left on the job folder's disk holds no job: Hydra's config files take some KiB, and a
# checkpoint of the smallest recipe some hundred
MIN_FREE_BYTES = 1 << 20


class WritableJobFolder(Callback):
    """Before a run (``hydra.run.dir``) or a multirun (``hydra.sweep.dir``) starts: its folder must be one
    this account can create, on a disk with ``MIN_FREE_BYTES`` free, or the command exits with one line naming
    the folder and the setting to change."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config, "hydra.sweep.dir")


def _check(config: DictConfig, key: str) -> None:
    from explab.cli import exit_with_message
    from explab.utils.folders import free_bytes, unwritable

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
                f"{OTHER_FOLDER}"
            )
        )
    free = free_bytes(folder)
    if free < MIN_FREE_BYTES:
        exit_with_message(
            UsageError(
                f"The job's folder {folder} has no room: its disk has {free // 1024} KiB free, too little for the "
                "job's config files and checkpoints. Free space there, or give a folder on another disk: "
                f"{OTHER_FOLDER}"
            )
        )
