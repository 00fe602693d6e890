"""The sweeper's settings, under ``hydra.sweeper`` once ``hydra/sweeper=explab_optuna`` is chosen, and its
``hydra/sweeper/sampler`` and ``hydra/sweeper/pruner`` groups.

The keys and groups of Hydra's own Optuna sweeper (``hydra-optuna-sweeper``) keep that plugin's meaning, so a
config written for it runs here with only ``override hydra/sweeper: explab_optuna`` changed.

Kept free of heavy imports (Hydra imports every plugin module at every start-up) and of
``from __future__ import annotations`` (Hydra loads plugin modules outside sys.modules, which breaks
dataclasses with string annotations).
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ExplabOptunaSweeperConf:
    _target_: str = "hydra_plugins.explab_optuna_sweeper.sweeper.ExplabOptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    # sampler and pruner are built by the sweeper (a grid needs the search space, a resume a seed offset)
    _recursive_: bool = False
    # minimize or maximize; a list of them (one per metric) makes a multi-objective study
    direction: Any = "minimize"
    # the key to optimise when a job returns a mapping of metrics (a list: one per direction); None when it
    # returns one number, or one number per direction
    metric: Any = None
    # finished trials (COMPLETE + PRUNED) the study should reach, counting earlier runs and other workers
    n_trials: int = 20
    study_name: Any = None
    # journal:////abs/path.log (one host), sqlite:///..., postgresql://... (many hosts); None: in memory
    storage: Any = None
    # hydra/sweeper/sampler=tpe|random|grid|cmaes|qmc|nsgaii, with its arguments
    sampler: Any = MISSING
    # hydra/sweeper/pruner=none|median|successive_halving|hyperband|threshold; one objective only
    pruner: Any = MISSING
    # the search space: {key: "interval(0.1, 1)" | "range(1, 5)" | "choice(a, b)" | {type, low, high, ...}};
    # a plain value is a fixed override every trial gets
    params: Any = None
    # the search space in the {type, low, high, ...} form only (hydra-optuna-sweeper 1.1); merged under params
    search_space: Any = None
    # "module.function" called as function(config, trial) after params are sampled, to suggest more (define-by-run)
    custom_search_space: Any = None
    # {tracking_uri, experiment_name}: a parent MLflow run per study; None: no MLflow
    mlflow: Any = None
    # "module:function" called as function(job_config, metric) before the first trial
    check: Any = None
    # stop after this many failed trials in a row in this process (None: n_trials)
    max_failures: Any = None
    # stop once more than this share of the trials this process ran failed (None: only max_failures applies)
    max_failure_rate: Any = None
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
    # several objectives: the point (one value per objective) the hypervolume is measured from; None: the worst
    # value of each objective among the first finished trials, widened by a tenth of their range, kept on the study
    reference_point: Any = None
    # earlier searches to learn from before the first trial: [{storage: URL, study_name: NAME} | {mlflow: EXPERIMENT,
    # tracking_uri: URI}]; their finished points inside this space become COMPLETE trials, never trained again
    warm_start: Any = None
    # configurations to run first, e.g. [{optimizer.lr: 0.001, model.backbone.depth: 2}]; queued once per study
    enqueue: Any = None
    # after the search, train its replicate_top best configurations replicates - 1 more times, each with its own
    # seed (the config key seed_key), and name the winner by the lower bound of its 95 % interval; 1: off
    replicates: int = 1
    replicate_top: int = 3
    seed_key: str = "seed"


# Each sampler is the Optuna class with only the arguments explab sets; the others keep Optuna's defaults.
SAMPLERS = {
    # Tree-structured Parzen Estimator: the default; random for the first n_startup_trials; any number of objectives;
    # group: a conditional space (when:) is modelled per set of parameters that occur together
    "tpe": {
        "_target_": "optuna.samplers.TPESampler",
        "seed": None,
        "n_startup_trials": 4,
        "multivariate": True,
        "group": True,
    },
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
    # every combination of a discrete space (choice, range, or float with step); n_trials is capped at the grid size
    "grid": {"_target_": "optuna.samplers.GridSampler", "seed": None},
    # CMA-ES for continuous spaces (needs the `cmaes` package, installed with explab)
    "cmaes": {"_target_": "optuna.samplers.CmaEsSampler", "seed": None, "n_startup_trials": 1},
    # quasi-Monte Carlo (scrambled Sobol): even coverage of the space, good for the first look
    "qmc": {"_target_": "optuna.samplers.QMCSampler", "seed": None, "qmc_type": "sobol", "scramble": True},
    # the genetic algorithm for several objectives; a generation is population_size trials
    "nsgaii": {"_target_": "optuna.samplers.NSGAIISampler", "seed": None, "population_size": 50},
}

PRUNERS = {
    # stop a trial whose intermediate value is worse than the median of earlier trials at the same epoch
    "median": {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 3, "n_warmup_steps": 1},
    "successive_halving": {
        "_target_": "optuna.pruners.SuccessiveHalvingPruner",
        "min_resource": 1,
        "reduction_factor": 3,
    },
    # max_resource: the epochs a full trial runs ("auto": learnt from the first finished trial)
    "hyperband": {
        "_target_": "optuna.pruners.HyperbandPruner",
        "min_resource": 1,
        "max_resource": "auto",
        "reduction_factor": 3,
    },
    # stop a trial whose value leaves [lower, upper] after n_warmup_steps epochs (a floor on accuracy, say)
    "threshold": {"_target_": "optuna.pruners.ThresholdPruner", "lower": None, "upper": None, "n_warmup_steps": 0},
}

store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="explab_optuna", node=ExplabOptunaSweeperConf, provider="explab")
for _name, _node in SAMPLERS.items():
    store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="explab")
for _name, _node in PRUNERS.items():
    store.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="explab")
# no pruner: the group's option sets the sweeper's pruner key itself to null
store.store(
    group="hydra/sweeper/pruner", name="none", node={"pruner": None}, package="hydra.sweeper", provider="explab"
)
