"""Runs as a researcher leaves them after training one of two seeds further with other settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from explab.config import config_dir
from explab.reproduce import config_from_recorded_run
from explab.train import train
from tests.conftest import runs_in


def two_seeds_one_resumed_to_two_epochs(compose_cfg: Callable[..., DictConfig], store: Path) -> None:
    """Seeds 1 and 2 of digits_cnn trained one epoch each (no test), then seed 1 resumed to two epochs."""
    common = ("trainer.max_epochs=1", "trainer.enable_progress_bar=false", "test=false")
    for seed in (1, 2):
        train(compose_cfg(*common, f"seed={seed}"))
    first = next(r for r in runs_in(store, "digits_cnn") if r.data.params["seed"] == "1")
    cfg = compose_cfg(f"resume={first.info.run_id}", "trainer.max_epochs=2", "trainer.enable_progress_bar=false")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):  # the recorded overrides are composed again
        train(config_from_recorded_run(cfg))
