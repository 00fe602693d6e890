"""``hydra/sweeper=explab_basic``: Hydra's basic sweeper settings, and the check run on every job's config.

Kept free of heavy imports (Hydra imports every plugin module at every start-up) and of
``from __future__ import annotations`` (Hydra loads plugin modules outside sys.modules, which breaks
dataclasses with string annotations).
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


ConfigStore.instance().store(group="hydra/sweeper", name="explab_basic", node=ExplabBasicSweeperConf, provider="explab")
