"""Hydra's basic sweeper (``-m a=1,2 b=x,y``), with every job's config checked before the first job runs.

Hydra composes each job of a batch before launching it; this sweeper also runs ``hydra.sweeper.check`` on
each composed config, so ``-m optimizer.lr=0.01,-1`` stops with one message before either job trains,
instead of training the first and ending with the second's traceback.
"""

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class ExplabBasicSweeper(BasicSweeper):
    """``hydra/sweeper=explab_basic``; settings in ``ExplabBasicSweeperConf``."""

    def __init__(
        self,
        max_batch_size: int | None,
        params: dict[str, str] | None = None,
        check: str | None = None,
        swept: list[str] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.check = check
        self.swept: list[str] | None = None  # found from the jobs themselves; a value given here is ignored

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        """The next jobs, each told which keys vary between this multirun's jobs, to name its MLflow run by.

        A Hydra override: the job's own overrides, which the run records and ``reproduce=`` composes again,
        stay as they were.
        """
        assert self.overrides is not None, "sweep() splits the arguments into batches first"
        if self.swept is None:
            jobs = [job for batch in self.overrides for job in batch]
            values: dict[str, set[str]] = {}
            for override in (o for job in jobs for o in job):
                key, _, value = override.lstrip("+~").partition("=")
                values.setdefault(key, set()).add(value)
            self.swept = [key for key, seen in values.items() if len(seen) > 1 and not key.startswith("hydra.")]
        batch = super().get_job_batch()
        if not self.swept:
            return batch
        keys = ",".join(f"'{key}'" for key in self.swept)
        return [[*job, f"hydra.sweeper.swept=[{keys}]"] for job in batch]

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        if not self.check:
            super().validate_batch_is_legal(batch)
            return
        from hydra.core.utils import filter_overrides

        from explab.errors import ExplabError, UsageError
        from explab.sweep import named_function

        assert self.hydra_context is not None and self.config is not None
        check = named_function(self.check)
        for number, overrides in enumerate(batch):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            try:
                check(config, None)
            except ExplabError as error:
                given = " ".join(filter_overrides(overrides))  # without the sweeper's own hydra.sweeper.swept
                raise UsageError(f"job {number} ({given}) of this multirun: {error}") from None

    def sweep(self, arguments: list[str]) -> Any:
        from explab.cli import exit_with_message
        from explab.errors import ExplabError

        try:
            return super().sweep(arguments)
        except ExplabError as error:  # found before a job started: a message, not a traceback
            exit_with_message(error)
