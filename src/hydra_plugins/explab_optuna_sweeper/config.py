"""The sweeper's settings, under ``hydra.sweeper`` once ``hydra/sweeper=explab_optuna`` is chosen.

Kept free of heavy imports (Hydra imports every plugin module at every start-up) and of
``from __future__ import annotations`` (Hydra loads plugin modules outside sys.modules, which breaks
dataclasses with string annotations).
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class ExplabOptunaSweeperConf:
    _target_: str = "hydra_plugins.explab_optuna_sweeper.sweeper.ExplabOptunaSweeper"
    # sampler and pruner are built by the sweeper (a grid needs the search space, a resume a seed offset)
    _recursive_: bool = False
    # minimize or maximize
    direction: str = "minimize"
    # the key to optimise when a job returns a mapping of metrics; None when it returns one number
    metric: Any = None
    # finished trials (COMPLETE + PRUNED) the study should reach, counting earlier runs and other workers
    n_trials: int = 20
    study_name: Any = None
    # journal:////abs/path.log (one host), sqlite:///..., postgresql://... (many hosts); None: in memory
    storage: Any = None
    # any optuna.samplers class (TPE, Random, Grid, CmaEs, QMC), with its arguments
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    # any optuna.pruners class, or None
    pruner: Any = None
    # the search space: {key: "interval(0.1, 1)" | "range(1, 5)" | "choice(a, b)" | {type, low, high, ...}}
    params: Any = None
    # {tracking_uri, experiment_name}: a parent MLflow run per study; None: no MLflow
    mlflow: Any = None
    # "module:function" called as function(job_config, metric) before the first trial
    check: Any = None
    # stop after this many failed trials in this process (None: n_trials)
    max_failures: Any = None
    # a proposal equal to a COMPLETE trial's values is told that trial's value without training and does not
    # count towards n_trials; false: train every proposal (a noisy objective that should be re-measured)
    skip_repeats: bool = True
    # worker processes this command starts on this machine, each pulling its next trial the moment it is free;
    # torch threads are shared out (cores / n_jobs) and visible GPUs dealt round-robin
    n_jobs: int = 1
    # workers packed onto each visible GPU; with n_jobs=1 it sets n_jobs to GPUs x trials_per_gpu
    trials_per_gpu: Any = None
    # submit n_jobs worker jobs through the SLURM launcher and return at once (explab-sweep status STUDY)
    detach: bool = False
    # accept a resumed study whose search space, direction, metric or fixed overrides changed (tags the parent)
    allow_changes: bool = False
    # a worker on another host whose trial has not beaten for 4 x this long is taken to be gone
    heartbeat_seconds: float = 30.0


ConfigStore.instance().store(
    group="hydra/sweeper", name="explab_optuna", node=ExplabOptunaSweeperConf, provider="explab"
)
