"""The Hydra plugin class: a thin front that imports its implementation only when a sweep is configured.

Hydra imports every plugin module at every start-up, so this module stays free of Optuna, MLflow and
explab imports; ``_impl`` holds the sweep itself.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class ExplabOptunaSweeper(Sweeper):
    """Hydra's ``Sweeper`` for ``hydra/sweeper=explab_optuna``; settings in ``ExplabOptunaSweeperConf``."""

    def __init__(self, **settings: Any) -> None:
        """``settings`` are the fields of ``ExplabOptunaSweeperConf`` (``hydra.sweeper.*``)."""
        from ._impl import ExplabOptunaSweeperImpl

        self.sweeper = ExplabOptunaSweeperImpl(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from explab.cli import exit_with_message
        from explab.errors import ExplabError

        try:
            return self.sweeper.sweep(arguments)
        except ExplabError as error:  # a bad search space, metric or store: a message, not a traceback
            exit_with_message(error)
