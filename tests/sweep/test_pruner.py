"""The study's pruner: recorded on the study for jobs in other processes, blind to warm-started trials."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from explab.errors import UsageError
from explab.sweep import WARM_START_ATTR
from explab.sweep.pruner import PRUNER_ATTR, build_pruner, check_pruner, record_pruner
from explab.sweep.storage import open_storage
from explab.sweep.trial import TrialJob
from hydra_plugins.explab_optuna_sweeper.config import PRUNERS

MEDIAN = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1, "n_warmup_steps": 0}
X = {"x": FloatDistribution(0, 1)}


def report(study: optuna.Study, *values: float) -> optuna.Trial:
    trial = study.ask(X)
    for step, value in enumerate(values):
        trial.report(value, step)
    return trial


def test_a_warm_started_study_judges_its_trials_by_the_trials_it_trained() -> None:
    study = optuna.create_study(direction="maximize", pruner=build_pruner(MEDIAN))
    # an earlier search's survivor: high at every epoch
    study.add_trial(
        create_trial(
            params={"x": 0.5},
            distributions=X,
            value=0.99,
            intermediate_values={0: 0.95, 1: 0.99},
            user_attrs={WARM_START_ATTR: "study earlier trial 0"},
        )
    )
    first = report(study, 0.6)
    assert not first.should_prune(), "nothing trained here yet: the pruner's startup count is not met"
    bare = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    assert bare.prune(study, study.trials[-1]), "Optuna's own pruner would judge it by the warm-started trial"
    study.tell(first, 0.7)
    assert not report(study, 0.65).should_prune(), "above this study's own median"
    assert report(study, 0.5).should_prune(), "under this study's own median"


def test_warm_started_trials_leave_hyperband_as_it_was() -> None:
    study = optuna.create_study(
        direction="maximize",
        pruner=build_pruner({"_target_": "optuna.pruners.HyperbandPruner", "min_resource": 1, "max_resource": 9}),
    )
    study.add_trial(
        create_trial(
            params={"x": 0.5},
            distributions=X,
            value=0.99,
            intermediate_values={0: 0.99},
            user_attrs={WARM_START_ATTR: "study earlier trial 0"},
        )
    )
    assert not report(study, 0.1).should_prune(), "the first trial of its rung is not compared with anything"


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [(MEDIAN, "TrainedTrialsPruner MedianPruner 1"), (None, "NopPruner NopPruner"), ("absent", "NopPruner NopPruner")],
)
def test_a_job_in_another_process_prunes_by_the_rule_its_sweep_recorded(
    tmp_path: Path, recorded: dict | str | None, expected: str
) -> None:
    """A SLURM job reopens its study from the storage, where Optuna keeps no pruner: without the sweep's record
    it would get Optuna's default MedianPruner whatever the sweep said, ``pruner=none`` included."""
    url = f"journal:///{tmp_path}/optuna.journal"
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    if recorded != "absent":
        record_pruner(study, recorded)
        assert study.user_attrs[PRUNER_ATTR] == recorded
    number = study.ask(X).number
    job = (
        "from omegaconf import OmegaConf\n"
        "from explab.sweep.pruner import pruner_name\n"
        "from explab.sweep.storage import trial_from_config\n"
        f"trial = trial_from_config(OmegaConf.create({{'study_name': 's', 'storage': '{url}', 'number': {number}}}))\n"
        "pruner = trial.study.pruner\n"
        "inner = getattr(pruner, 'pruner', None)\n"
        "print(type(pruner).__name__, pruner_name(pruner), *([inner._n_startup_trials] if inner and "
        "hasattr(inner, '_n_startup_trials') else []))\n"
    )
    done = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == expected


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_the_shipped_pruners_pass_the_check_a_sweep_runs_first(name: str) -> None:
    config = {**PRUNERS[name], **({"lower": 0.5} if name == "threshold" else {})}  # a threshold needs its bound
    for direction in ("minimize", "maximize"):
        check_pruner(config, direction)


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"min_resource": 0}, "division by zero"),  # Optuna takes it, then fails at every trial's first epoch
        ({"reduction_factor": 1}, "float division by zero"),
    ],
)
def test_a_pruner_optuna_accepts_but_cannot_prune_with_is_refused(settings: dict, reason: str) -> None:
    with pytest.raises(UsageError, match=rf"HyperbandPruner: .*\) cannot prune: {reason}\. Change its settings"):
        check_pruner({**PRUNERS["hyperband"], **settings}, "maximize")


@pytest.mark.parametrize(
    ("objective", "follows"),
    [
        (["val/loss"], "val/loss"),  # the study's metric, not the recipe's optimized_metric (val/acc_best)
        (["test/acc"], None),  # logged only after the fit: nothing to report each epoch
        # several objectives: the recipe's, which the callback does not report to such a study (Optuna prunes none)
        (["val/acc_best", "perf/fit_seconds"], "val/acc_best"),
        ([], "val/acc_best"),  # a sweep that names no metric: the recipe's
    ],
)
def test_a_trial_job_prunes_on_what_its_study_optimises(objective: list[str], follows: str | None) -> None:
    """hydra.sweeper.metric=val/loss with the recipe's optimized_metric=val/acc_best reported accuracies to a
    study minimising the loss, and pruned the trials with the best accuracy."""
    trial = {"study_name": "s", "number": 0, "storage": "journal:///nowhere.journal", "objective": objective}
    job = TrialJob(OmegaConf.create({"optuna_trial": trial, "optimized_metric": "val/acc_best"}))
    assert (job.pruning.monitor if job.pruning else None) == follows
