"""What a sweep leaves on its MLflow parent run: best value and params, all trials, Optuna's plots."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from explab.sweep import REPEATS_ATTR, is_repeat
from explab.utils.logging import get_logger

if TYPE_CHECKING:
    import optuna

    from explab.tracking import TrackedRun

log = get_logger(__name__)

PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice", "intermediate_values")


def _save_plots(study: optuna.Study, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    saved = []
    for name in PLOTS:
        try:
            axes = getattr(optuna_plots, f"plot_{name}")(study)
        except Exception as err:  # e.g. importances need >1 complete trial with varying params
            log.info("plot %s skipped: %s", name, err)
            continue
        figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
        figure.set_size_inches(9, 6)
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(figure)
        saved.append(path)
    return saved


def best_trained_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """``study.best_trial``, or the trial that actually ran when the best is a repeat told its value."""
    best = study.best_trial
    return study.trials[best.user_attrs[REPEATS_ATTR]] if is_repeat(best) else best


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state (``complete``, ``pruned``, ``fail``, ``running``, ``waiting``) and ``repeated``: the
    complete ones told an earlier trial's value."""
    from optuna.trial import TrialState

    states = [t.state for t in study.trials]
    counts = {state.name.lower(): states.count(state) for state in TrialState}
    counts["repeated"] = sum(map(is_repeat, study.trials))
    return counts


def describe_progress(study: optuna.Study) -> str:
    """One line: the trials by state and the best value so far, with its trial and params."""
    counts = trial_counts(study)
    line = (
        f"study '{study.study_name}': {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['fail']} failed, {counts['running']} running ({counts['repeated']} of the complete are repeats)"
    )
    try:
        best = best_trained_trial(study)
    except ValueError:
        return f"{line}; no trial completed yet"
    return f"{line}; best value {best.value:.6g} (trial {best.number}: {best.params})"


def summarise_study(study: optuna.Study, run: TrackedRun) -> None:
    """Best value and params, a CSV of every trial and the plots, on the sweep's parent run."""
    from optuna.trial import TrialState

    counts = trial_counts(study)
    run.log_metrics({f"trials_{name}": n for name, n in counts.items()})
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if complete:
        best = best_trained_trial(study)
        assert best.value is not None  # a COMPLETE trial has its value
        run.log_metrics({"best_value": float(best.value)})
        run.set_tags({"optuna.best_trial": best.number})
        run.log_text(
            yaml.safe_dump({"value": best.value, "trial": best.number, "params": best.params}, sort_keys=True),
            "sweep/best_params.yaml",
        )
    with tempfile.TemporaryDirectory(prefix="explab-sweep-") as tmp:
        folder = Path(tmp)
        table = study.trials_dataframe()
        table.to_csv(folder / "trials.csv", index=False)
        run.log_file(folder / "trials.csv", "sweep")
        if complete:
            for path in _save_plots(study, folder):
                run.log_file(path, "sweep/plots")
