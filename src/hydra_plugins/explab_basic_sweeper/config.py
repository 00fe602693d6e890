"""``hydra/sweeper=explab_basic``: Hydra's basic sweeper settings, and the check run on every job's config.

Written under the same constraints as ``explab_optuna_sweeper/config.py``, which gives the reasons: light
imports only, and no postponed annotations.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class ExplabBasicSweeperConf:
    _target_: str = "hydra_plugins.explab_basic_sweeper.sweeper.ExplabBasicSweeper"
    # Hydra's basic sweeper's own: jobs launched per batch (None: all at once), and overrides every job gets
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    # module:function(config, metric) run on every job's composed config before the first job starts
    check: str | None = None
    # set by the sweeper on each job, not by hand: the keys whose values differ between the multirun's jobs,
    # which name each job's MLflow run (``seed=2 optimizer.lr=0.01``)
    swept: list[str] | None = None


ConfigStore.instance().store(group="hydra/sweeper", name="explab_basic", node=ExplabBasicSweeperConf, provider="explab")
