"""What a sweep leaves on its MLflow parent run: best value and params (or, for several objectives, the Pareto
front and its hypervolume), all trials, Optuna's plots."""

from __future__ import annotations

import csv
import logging
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from explab.sweep import REPEATS_ATTR, WARM_START_ATTR, is_repeat, is_replicate, is_warm_start
from explab.sweep.continuation import RUN_ATTR
from explab.sweep.pareto import hypervolume_history, pareto_front, reference_point
from explab.sweep.replicates import ReplicatedConfiguration, replicated_configurations, study_winner
from explab.sweep.telling import ERROR_ATTR
from explab.tracking.staging import room_to_stage
from explab.utils.logging import get_logger, logger_at_least

if TYPE_CHECKING:
    import optuna

    from explab.tracking import TrackedRun

log = get_logger(__name__)

PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice", "intermediate_values")
PARETO_TAG = "explab.pareto"  # "true" on the child runs of the trials on the front, "false" on the others


def _plots(study: optuna.Study, names: Sequence[str], reference: Sequence[float] | None) -> dict[str, Any]:
    """Each plot's file name and how to draw it; for several objectives, the front, its hypervolume over the
    trials and the importances of the parameters to each objective."""
    from optuna.visualization import matplotlib as optuna_plots

    if len(study.directions) == 1:
        return {name: lambda name=name: getattr(optuna_plots, f"plot_{name}")(study) for name in PLOTS}
    from optuna.study import StudyDirection

    plots: dict[str, Any] = {"pareto_front": lambda: optuna_plots.plot_pareto_front(study, target_names=list(names))}
    if reference is not None:
        plots["hypervolume_history"] = lambda: optuna_plots.plot_hypervolume_history(study, reference)
    for i, (name, direction) in enumerate(zip(names, study.directions, strict=True)):
        # importance evaluators rank parameters by how they lower the target: a maximised objective is negated
        sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
        plots[f"param_importances_{name.replace('/', '_')}"] = lambda i=i, name=name, sign=sign: (
            optuna_plots.plot_param_importances(study, target=lambda t: sign * t.values[i], target_name=name)
        )
    return plots


def _save_plots(
    study: optuna.Study, folder: Path, names: Sequence[str], reference: Sequence[float] | None
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    saved = []
    # a numeric choice() is a categorical parameter, which Optuna plots as text: matplotlib says so at INFO,
    # twice per plot, and Hydra's logging printed it into every sweep that searched a batch size
    with logger_at_least("matplotlib.category", logging.WARNING):
        for name, plot in _plots(study, names, reference).items():
            path = _save_plot(name, plot, folder)
            if path is not None:
                saved.append(path)
    return saved


def _save_plot(name: str, plot: Any, folder: Path) -> Path | None:
    """Draw one of ``_plots`` into ``folder/NAME.png``; None where Optuna cannot draw it for this study."""
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning

    try:
        with warnings.catch_warnings():  # Optuna marks its multi-objective plots experimental, on every call
            warnings.simplefilter("ignore", ExperimentalWarning)
            # and matplotlib warns through them about axes of one trial ("identical low and high xlims"), as
            # the importances do about too few trials to tell parameters apart (the plot shows them equal)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"optuna\.(visualization|importance)")
            axes = plot()
    except Exception as err:  # e.g. importances need >1 complete trial with varying params
        log.info("plot %s skipped: %s", name, err)
        return None
    figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
    figure.set_size_inches(9, 6)
    path = folder / f"{name}.png"
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)
    return path


def best_trained_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The search's best trial: ``study.best_trial`` leaving out replicates (a lucky seed of a configuration
    is not a search result), and when the best is a repeat told its value, the trial that actually ran.

    Raises:
        ValueError: no trial of the search is COMPLETE.
    """
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not is_replicate(t)]
    if not complete:
        raise ValueError(f"no trial of study '{study.study_name}' is complete")
    sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
    # the earliest of equal values, as Optuna's own best_trial
    best = min(complete, key=lambda t: (sign * t.values[0], t.number))
    return study.trials[best.user_attrs[REPEATS_ATTR]] if is_repeat(best) else best


def none_completed(study: optuna.Study) -> str | None:
    """Why a study that ran to its end has no best trial because its trials failed, and what to do; None
    where a trial completed, or where every trial was pruned (the search's own verdict, which the summary
    states). Its pruned trials count as finished, so a study of pruned and failed trials is full without a
    result, though fewer than ``max_failures`` failed in a row."""
    from optuna.trial import TrialState

    counts = trial_counts(study)
    if counts["complete"] or not counts["fail"]:
        return None
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    last = failed[-1].user_attrs.get(ERROR_ATTR)
    return (
        f"no trial of study '{study.study_name}' completed ({counts['pruned']} pruned, {counts['fail']} failed"
        f"{f'; the last failure: {last}' if last else ''}), so it has no best trial. Fix what failed them, then "
        "go on with a larger hydra.sweeper.n_trials (pruned trials count as finished) or start another study "
        "with hydra.sweeper.study_name=NAME"
    )


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state (``complete``, ``pruned``, ``fail``, ``running``, ``waiting``), ``repeated``: the
    complete ones told an earlier trial's value, ``warm_started``: those copied from a warm-start source, and
    ``replicates``: top configurations trained again with other seeds."""
    from optuna.trial import TrialState

    states = [t.state for t in study.trials]
    counts = {state.name.lower(): states.count(state) for state in TrialState}
    counts["repeated"] = sum(map(is_repeat, study.trials))
    counts["warm_started"] = sum(map(is_warm_start, study.trials))
    counts["replicates"] = sum(map(is_replicate, study.trials))
    return counts


def trial_named(trial: optuna.trial.FrozenTrial) -> str:
    """``trial 3 (MLflow run <id>)``: the trial with where its record and checkpoints are, which
    ``reproduce=`` and ``resume=`` take; a trial copied from a warm-start source names that source, and one
    with no run (``logger=none``) only its number."""
    if is_warm_start(trial):
        return f"trial {trial.number} (copied from {trial.user_attrs[WARM_START_ATTR]})"
    run_id = trial.user_attrs.get(RUN_ATTR)
    return f"trial {trial.number} (MLflow run {run_id})" if run_id else f"trial {trial.number}"


def _values(trial: optuna.trial.FrozenTrial) -> str:
    return ", ".join(f"{v:.6g}" for v in trial.values)


def describe_progress(study: optuna.Study) -> str:
    """One line: the trials by state and the best value so far (the Pareto front, for several objectives)."""
    counts = trial_counts(study)
    line = (
        f"study '{study.study_name}': {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['fail']} failed, {counts['running']} running ({counts['repeated']} of the complete are repeats"
        f"{'; ' + str(counts['warm_started']) + ' copied from warm-start sources' if counts['warm_started'] else ''}"
        f"{'; ' + str(counts['replicates']) + ' replicates of top configurations' if counts['replicates'] else ''})"
    )
    if not counts["complete"]:
        return f"{line}; no trial completed yet"
    if len(study.directions) > 1:
        front = pareto_front(study)
        described = "; ".join(f"{trial_named(t)}: {_values(t)}" for t in front)
        return f"{line}; Pareto front of {len(front)}: {described}"
    best = best_trained_trial(study)
    line = f"{line}; best value {best.value:.6g}, {trial_named(best)}: {best.params}"
    configurations = replicated_configurations(study)
    if not configurations:
        return line
    chosen = study_winner(study, configurations)
    return (
        f"{line}; winner over seeds: {trial_named(study.trials[chosen.trial])}, mean {chosen.interval.mean:.6g} "
        f"over {len(chosen.values)} seeds, 95% interval [{chosen.interval.low:.6g}, {chosen.interval.high:.6g}]"
        f"{failed_seeds_said(chosen.failed_seeds)}"
    )


def sweep_results(study: optuna.Study, names: Sequence[str]) -> dict[str, Any]:
    """The sweep's outcome as Hydra's own Optuna sweeper writes it to ``optimization_results.yaml``
    (``best_params`` and ``best_value``, or ``solutions`` for several objectives), with trial numbers, and
    with replicates the ``winner`` and each ``replicated`` configuration's values and interval."""
    results: dict[str, Any] = {"name": "optuna", "objectives": list(names)}
    if not trial_counts(study)["complete"]:
        return results
    if len(study.directions) > 1:
        results["solutions"] = [
            {"trial": t.number, **_run_field(t), "params": t.params, "values": list(t.values)}
            for t in pareto_front(study)
        ]
    else:
        best = best_trained_trial(study)
        results.update(best_params=best.params, best_value=best.value, best_trial=best.number)
        if run := _run_field(best):
            results["best_run_id"] = run["run_id"]
    configurations = replicated_configurations(study)
    if configurations:
        chosen = study_winner(study, configurations)
        results["winner"] = {
            "trial": chosen.trial,
            **_run_field(study.trials[chosen.trial]),
            "params": chosen.params,
            **_interval_fields(chosen),
        }
        results["replicated"] = [
            {"trial": c.trial, "values": c.values, **_interval_fields(c), "failed_seeds": list(c.failed_seeds)}
            for c in configurations
        ]
    return results


def _run_field(trial: optuna.trial.FrozenTrial) -> dict[str, str]:
    """``{"run_id": ...}`` for a trial with an MLflow run, else nothing."""
    run_id = trial.user_attrs.get(RUN_ATTR)
    return {"run_id": run_id} if run_id else {}


def write_results(study: optuna.Study, names: Sequence[str], folder: Path, turned_off: Sequence[str] = ()) -> None:
    """Write ``sweep_results`` to ``folder/optimization_results.yaml``, as Hydra's own Optuna sweeper does,
    and log them: the best trial, or every trial on the Pareto front, and the winner over seeds, each with
    its MLflow run. ``turned_off`` names the records the trials' runs left out (``log_model``,
    ``log_plots``): the log then says how to train the chosen configuration again with them."""
    from omegaconf import OmegaConf
    from optuna.study import StudyDirection

    results = sweep_results(study, names)
    folder.mkdir(parents=True, exist_ok=True)  # a resumed study with nothing left to run made none
    OmegaConf.save(OmegaConf.create(results), folder / "optimization_results.yaml")
    if "solutions" in results:
        log.info("Pareto front (%s): %d trials", ", ".join(names), len(results["solutions"]))
        for solution in results["solutions"]:
            values = ", ".join(f"{v:.6g}" for v in solution["values"])
            log.info("    %s: %s with %s", trial_named(study.trials[solution["trial"]]), values, solution["params"])
    elif "best_value" in results:
        log.info(
            "Best %s: %s = %.6g with %s",
            trial_named(study.trials[results["best_trial"]]),
            names[0],
            results["best_value"],
            results["best_params"],
        )
    else:
        counts = trial_counts(study)
        log.warning(
            "no trial completed (%d pruned, %d failed): the study has no best trial", counts["pruned"], counts["fail"]
        )
    for c in results.get("replicated", []):
        log.info(
            "    trial %d over %d seeds: mean %.6g, 95%% interval [%.6g, %.6g]%s",
            c["trial"],
            c["n"],
            c["mean"],
            c["ci_low"],
            c["ci_high"],
            failed_seeds_said(c["failed_seeds"]),
        )
    if "winner" in results:
        winner = results["winner"]
        maximised = study.directions[0] == StudyDirection.MAXIMIZE
        bound = ("lower", winner["ci_low"]) if maximised else ("upper", winner["ci_high"])
        log.info(
            "Winner over seeds: the configuration of %s, %s (the best %s bound, %.6g)",
            trial_named(study.trials[winner["trial"]]),
            winner["params"],
            *bound,
        )
    chosen = results.get("winner", {}).get("run_id") or results.get("best_run_id")
    if chosen and turned_off:
        log.info(
            "the trials ran with %s; to train the %s again with them: explab-train reproduce=%s %s",
            " ".join(f"{key}=false" for key in turned_off),
            "winner" if "winner" in results else "best trial",
            chosen,
            " ".join(f"{key}=true" for key in turned_off),
        )


def failed_seeds_said(seeds: Sequence[int]) -> str:
    """``; failed on seed 3`` for a configuration whose replicates failed on seeds that never completed (it
    ranks after those that completed every seed); "" for none."""
    if not seeds:
        return ""
    said = f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}"
    return f"; failed on {said} (ranked after the configurations that completed every seed)"


def _interval_fields(configuration: ReplicatedConfiguration) -> dict[str, float]:
    i = configuration.interval
    return {"n": i.n, "mean": i.mean, "std": i.std, "ci_low": i.low, "ci_high": i.high}


def _log_replicates(study: optuna.Study, run: TrackedRun, folder: Path) -> None:
    """``sweep/replicates.csv`` and ``replicates/trial_N/{mean,std,ci_low,ci_high}`` per replicated
    configuration, and the tag ``explab.winner_trial``."""
    configurations = replicated_configurations(study)
    if not configurations:
        return
    chosen = study_winner(study, configurations)
    params = sorted({key for c in configurations for key in c.params})
    with (folder / "replicates.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["trial", "winner", "n", "mean", "std", "ci_low", "ci_high", "values", "failed seeds", *params])
        for c in configurations:
            fields = _interval_fields(c)
            writer.writerow(
                [c.trial, c is chosen, *fields.values(), " ".join(f"{v:.6g}" for v in c.values)]
                + [" ".join(map(str, c.failed_seeds))]
                + [c.params.get(p, "") for p in params]
            )
    run.log_file(folder / "replicates.csv", "sweep")
    for c in configurations:
        run.log_metrics({f"replicates/trial_{c.trial}/{k}": v for k, v in _interval_fields(c).items() if k != "n"})
    run.set_tags({"explab.winner_trial": chosen.trial})


def _write_front(study: optuna.Study, names: Sequence[str], path: Path) -> list[optuna.trial.FrozenTrial]:
    """``pareto.csv``: a row per trial on the front (number, child run, objective values, params)."""
    front = pareto_front(study)
    params = sorted({key for t in front for key in t.params})
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["trial", "run_id", *names, *params])
        for t in front:
            row = [t.number, t.user_attrs.get(RUN_ATTR, ""), *t.values, *(t.params.get(p, "") for p in params)]
            writer.writerow(row)
    return front


def _tag_front(study: optuna.Study, front: Sequence[optuna.trial.FrozenTrial], run: TrackedRun) -> None:
    """``explab.pareto`` on every child run: "true" on the front; a trial the front has since left says "false"."""
    on_front = {t.number for t in front}
    for trial in study.trials:
        run_id = trial.user_attrs.get(RUN_ATTR)
        if run_id and not is_repeat(trial):
            run.client.set_tag(run_id, PARETO_TAG, str(trial.number in on_front).lower())


def _log_hypervolume(study: optuna.Study, run: TrackedRun, reference: Sequence[float]) -> None:
    """``hypervolume`` after each COMPLETE trial (step: trials so far); a resumed sweep adds only its new steps."""
    logged = {m.step for m in run.client.get_metric_history(run.run_id, "hypervolume")}
    for step, value in enumerate(hypervolume_history(study, reference), start=1):
        if step not in logged:
            run.log_metrics({"hypervolume": value}, step=step)
    run.set_tags({"optuna.reference_point": ", ".join(f"{v:.6g}" for v in reference)})


MIXED_HARDWARE_TAG = "explab.mixed_hardware"
MIXED_CODE_TAG = "explab.mixed_code"


def _trained_children(study: optuna.Study, run: TrackedRun) -> list[Any]:
    """The child runs of the study's COMPLETE trials that trained (not repeats, not warm starts)."""
    from optuna.trial import TrialState

    from explab.tracking.store import every_run

    trained = {
        t.user_attrs[RUN_ATTR]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if RUN_ATTR in t.user_attrs and not (is_repeat(t) or is_warm_start(t))
    }
    children = every_run(run.client, [run.experiment_id], f"tags.`mlflow.parentRunId` = '{run.run_id}'")
    return [child for child in children if child.info.run_id in trained]


def _check_timings_share_hardware(
    children: Sequence[Any], study: optuna.Study, run: TrackedRun, names: Sequence[str]
) -> None:
    """Warn, and tag the parent run ``explab.mixed_hardware``, when the study optimises a timing (``perf/``)
    and its trials trained on different hardware (detached workers on a mixed partition): their timings then
    compare machines as much as configurations, and so does every front or best trial chosen by them."""
    from explab.tracking.environment import hardware_mix

    timed = [name for name in names if name.startswith("perf/")]
    mix = hardware_mix(child.data.tags for child in children) if timed else ""
    if mix:
        log.warning(
            "the trials of study '%s' trained on different hardware (%s): %s compare machines as much as "
            "configurations; keep a timing sweep on one kind of node (one partition, or "
            "hydra.launcher.constraint=FEATURE)",
            study.study_name,
            mix,
            ", ".join(timed),
        )
        run.set_tags({MIXED_HARDWARE_TAG: mix[:5000]})


def _check_trials_share_code(children: Sequence[Any], study: optuna.Study, run: TrackedRun) -> None:
    """Warn, and tag the parent run ``explab.mixed_code``, when the study's trials trained from different code
    (another commit, uncommitted change or library version): a sweep resumed after a fix goes on with the
    trials trained before it, and its sampler and best trial weigh both alike."""
    from explab.tracking.environment import code_mix

    mix = code_mix(child.data.tags for child in children)
    if mix:
        log.warning(
            "the trials of study '%s' trained from different code (%s): the sampler and the best trial weigh "
            "them alike; after a change that touches what trains, start a new study (hydra.sweeper.study_name=...)",
            study.study_name,
            mix,
        )
        run.set_tags({MIXED_CODE_TAG: mix[:5000]})


def summarise_study(
    study: optuna.Study, run: TrackedRun, names: Sequence[str] = ("value",), reference: Sequence[float] | None = None
) -> None:
    """On the sweep's parent run: the best value and params, or for several objectives the Pareto front
    (``sweep/pareto.csv``, ``explab.pareto`` tags on child runs) and its hypervolume against ``reference``
    (see ``explab.sweep.pareto.reference_point``); a CSV of every trial, and the plots."""
    counts = trial_counts(study)
    run.log_metrics({f"trials_{name}": n for name, n in counts.items()})
    children = _trained_children(study, run)
    _check_timings_share_hardware(children, study, run, names)
    _check_trials_share_code(children, study, run)
    complete = counts["complete"] > 0
    several = len(study.directions) > 1
    reference = reference_point(study, reference) if several else None
    if complete and not several:
        best = best_trained_trial(study)
        assert best.value is not None  # a COMPLETE trial has its value
        run.log_metrics({"best_value": float(best.value)})
        run.set_tags({"optuna.best_trial": best.number})
    if complete:
        run.log_text(yaml.safe_dump(sweep_results(study, names), sort_keys=True), "sweep/best_params.yaml")
    staged = room_to_stage("The sweep's summary (its trials table and plots)")
    with staged, tempfile.TemporaryDirectory(prefix="explab-sweep-") as tmp:
        folder = Path(tmp)
        table = study.trials_dataframe()
        table.to_csv(folder / "trials.csv", index=False)
        run.log_file(folder / "trials.csv", "sweep")
        _log_replicates(study, run, folder)
        if complete and several:
            front = _write_front(study, names, folder / "pareto.csv")
            run.log_file(folder / "pareto.csv", "sweep")
            run.set_tags({"optuna.pareto_trials": ",".join(str(t.number) for t in front)})
            _tag_front(study, front, run)
            assert reference is not None  # made from the COMPLETE trials
            _log_hypervolume(study, run, reference)
        if complete:
            for path in _save_plots(study, folder, names, reference):
                run.log_file(path, "sweep/plots")
