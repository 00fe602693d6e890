"""``explab-report experiment=NAME``: every configuration an experiment ran, over its seeds, with intervals.

``experiment=[A,B]`` reports the configurations of several experiments together (recipes on the same data),
each labelled with its experiment; the report run is logged in the first.

Runs are grouped by their params minus the seed (and minus what only says where a run wrote); each group
gets n, mean, standard deviation and a confidence interval of the chosen metrics. With ``baseline=`` every
other configuration is tested against the baseline's (:mod:`explab.comparison`). Written as Markdown, CSV and
a figure of the intervals, printed, and logged on a ``report`` run of the experiment. The documented way to
report a result:

    explab-train -m experiment=digits_cnn seed=1,2,3 && explab-report experiment=digits_cnn
"""

from __future__ import annotations

import csv
import math
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from explab import comparison
from explab.cli import report_user_errors
from explab.config import config_dir
from explab.errors import UsageError
from explab.tracking.params import describes_training
from explab.utils.logging import get_logger

log = get_logger(__name__)

# besides where a run wrote: params that differ between repeats of one configuration without changing it, as
# what the run records besides its training (a reproduction with log_model=true trained the same thing)
REPEAT_KEYS = (
    "seed",
    "data.seed",
    "run_name",
    "test",
    "log_model",
    "log_plots",
    "registered_model_name",
    "system_metrics_seconds",
    "torch_threads",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
)
REPEAT_PREFIXES = ("optuna_trial.", "logger.", "time_to.")
# a label's numbers keep at least this many significant digits, more only where two values need them to differ
LABEL_DIGITS = 4

Configuration = tuple[tuple[str, str], ...]


def sets_apart(key: str) -> bool:
    """Whether a param can tell two configurations apart (a seed or an output folder cannot)."""
    return describes_training(key) and key not in REPEAT_KEYS and not key.startswith(REPEAT_PREFIXES)


def _configuration(params: dict[str, str]) -> Configuration:
    return tuple(sorted((k, v) for k, v in params.items() if sets_apart(k)))


def group_runs(runs: Sequence[Any]) -> dict[Configuration, list[Any]]:
    """Runs by configuration, each group one configuration's seed repeats."""
    groups: dict[Configuration, list[Any]] = defaultdict(list)
    for run in runs:
        groups[_configuration(run.data.params)].append(run)
    return dict(groups)


def labels(configurations: Sequence[Configuration]) -> dict[Configuration, str]:
    """What sets each configuration apart from the others; configurations of several experiments read as their
    experiment, and what sets each apart within it (``rotten_tomatoes_fasttext: optimizer.lr=0.01``)."""
    experiment_of = {c: dict(c).get("experiment_name") for c in configurations}
    if len(set(experiment_of.values())) < 2:
        return _labels_within(configurations)
    named: dict[Configuration, str] = {}
    for experiment in set(experiment_of.values()):
        inside = _labels_within([c for c in configurations if experiment_of[c] == experiment])
        named |= {c: str(experiment) if label == "all" else f"{experiment}: {label}" for c, label in inside.items()}
    return named


def _labels_within(configurations: Sequence[Configuration]) -> dict[Configuration, str]:
    """What sets each configuration apart from the others (``all`` when there is one).

    A class chosen by a config group reads as the group and the class (``optimizer=RMSprop`` for
    ``optimizer._target_=torch.optim.RMSprop``), and a key a configuration does not have is left out of its
    label (Adam has no ``optimizer.momentum``) unless nothing else would set it apart. A subtree another
    configuration has nothing of reads as its entries (``callbacks=early_stopping+lr_monitor`` against
    ``callbacks={}``) or its class, not as every setting in it; a setting in it that varies is still shown.
    """
    shown = _shown_values(configurations)
    settings = [{k: shown[k, v] for k, v in c} for c in configurations]
    varying = sorted({k for s in settings for k in s if len({t.get(k) for t in settings}) > 1})
    folded = [_label(s, varying, settings, fold=True) for s in settings]
    if len(set(folded)) < len(folded):
        # two subtrees told apart only below their entries: every setting, as it is
        folded = [_label(s, varying, settings, fold=False) for s in settings]
    return dict(zip(configurations, folded, strict=True))


def _shown_values(configurations: Sequence[Configuration]) -> dict[tuple[str, str], str]:
    """(key, value) -> the value as a label shows it: a number a sampler drew (``0.0012022983166419944``) to
    the fewest significant digits, at least ``LABEL_DIGITS``, that keep this key's values apart (``0.001202``);
    any other value as recorded."""
    values: dict[str, set[str]] = defaultdict(set)
    for key, value in (pair for c in configurations for pair in c):
        values[key].add(value)
    shown: dict[tuple[str, str], str] = {}
    for key, found in values.items():
        for digits in range(LABEL_DIGITS, 18):
            rounded = {value: _rounded(value, digits) for value in found}
            if len(set(rounded.values())) == len(found):
                break
        shown |= {(key, value): short for value, short in rounded.items()}
    return shown


def _rounded(value: str, digits: int) -> str:
    """``value`` to ``digits`` significant digits when it is a number with more, else as it is."""
    try:
        number = float(value)
    except ValueError:
        return value
    short = f"{number:.{digits}g}"
    return value if not math.isfinite(number) or float(short) == number else short


def _label(setting: dict[str, str], varying: list[str], settings: list[dict[str, str]], fold: bool) -> str:
    """One configuration's label (see ``labels``): its ``varying`` keys; with ``fold``, the keys of a subtree
    some configuration has nothing of, and that no two configurations holding it set apart, as one part."""
    parts: dict[str, str] = {}
    for key in [k for k in varying if k in setting] or varying:
        tree = _missing_elsewhere(key, settings) if fold else None
        if tree is None or len({s[key] for s in settings if key in s}) > 1:
            parts[key] = _part(key, setting.get(key))
        elif tree not in parts:
            target = setting.get(f"{tree}._target_")
            entries = sorted({k.removeprefix(f"{tree}.").split(".")[0] for k in setting if k.startswith(f"{tree}.")})
            parts[tree] = _part(f"{tree}._target_", target) if target else f"{tree}={'+'.join(entries)}"
    return ", ".join(parts.values()) or "all"


def _part(key: str, value: str | None) -> str:
    if key.endswith("._target_") and value is not None:
        return f"{key.removesuffix('._target_')}={value.rpartition('.')[2]}"
    return f"{key}={value}"


def _missing_elsewhere(key: str, settings: list[dict[str, str]]) -> str | None:
    """The outermost subtree holding ``key`` that some configuration has no setting under, or None."""
    segments = key.split(".")
    for depth in range(1, len(segments)):
        tree = ".".join(segments[:depth])
        if any(not any(k.startswith(f"{tree}.") for k in other) for other in settings):
            return tree
    return None


def _seed(run: Any) -> str:
    """The seed a run trained with; a run that records none stands for a seed of its own."""
    return str(run.data.params.get("seed", run.info.run_id))


def by_seed(runs: Sequence[Any], metric: str) -> dict[str, float]:
    """Seed -> value of ``metric``. A seed trained more than once (a reproduction, a rerun) is one sample, the
    mean of its runs: counted twice, it would add to n without adding a seed, and narrow the interval."""
    values: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        if metric in run.data.metrics:
            values[_seed(run)].append(run.data.metrics[metric])
    return {seed: statistics.fmean(found) for seed, found in values.items()}


def repeated_seeds(groups: Mapping[Configuration, Sequence[Any]]) -> int:
    """How many runs repeat a seed their configuration already ran (``by_seed`` counts each seed once)."""
    return sum(len(members) - len({_seed(r) for r in members}) for members in groups.values())


def aggregate(
    groups: Mapping[Configuration, Sequence[Any]], metrics: Sequence[str], ci: str = "t", confidence: float = 0.95
) -> list[dict[str, Any]]:
    """One row per configuration (``group_runs``): what sets it apart, n, seeds, and mean, std and interval of
    each metric."""
    named = labels(list(groups))
    found_by_metric = {
        metric: comparison.intervals_of(
            [list(by_seed(members, metric).values()) for members in groups.values()], ci, confidence, metric=metric
        )
        for metric in metrics
    }
    rows = []
    for i, (config, members) in enumerate(groups.items()):
        seeds = {_seed(r) for r in members}
        row: dict[str, Any] = {"configuration": named[config], "n": len(seeds), "seeds": " ".join(sorted(seeds))}
        for metric in metrics:
            found = found_by_metric[metric][i]
            row |= {
                f"{metric} mean": found.mean,
                f"{metric} std": found.std,
                f"{metric} ci_low": found.low,
                f"{metric} ci_high": found.high,
            }
        rows.append(row)
    return sorted(rows, key=lambda r: r["configuration"])


def find_baseline(spec: Any, groups: Mapping[Configuration, Sequence[Any]]) -> Configuration:
    """The one configuration ``spec`` names: a run name, a run id, or a mapping of params it must have."""

    def matches(run: Any) -> bool:
        if isinstance(spec, Mapping):
            return all(_has(run.data.params, str(k), v) for k, v in spec.items())
        return str(spec) in (run.info.run_id, run.info.run_name)

    found = [config for config, members in groups.items() if any(map(matches, members))]
    named = labels(list(groups))
    if not found:
        names = sorted({r.info.run_name for members in groups.values() for r in members})
        params = {k for config in groups for k, _ in config}
        parts = [part.split("=", 1) for label in named.values() for part in label.split(", ") if "=" in part]
        key, value = next(((k, v) for k, v in parts if k in params or f"{k}._target_" in params), ("seed", "1"))
        raise UsageError(
            f"baseline={spec} matches no FINISHED training run; give a run name ({', '.join(names[:8])}"
            f"{', ...' if len(names) > 8 else ''}), a run id, or params such as 'baseline={{{key}:{value}}}'"
        )
    if len(found) > 1:
        raise UsageError(
            f"baseline={spec} matches {len(found)} configurations ({'; '.join(named[c] for c in found)}); "
            "name one run, or give more params so that one configuration is left"
        )
    return found[0]


def _has(params: Mapping[str, str], key: str, wanted: Any) -> bool:
    """Whether a run's params give ``key`` the value ``wanted``; a config group's choice matches by the class it
    builds, as labels name it (``optimizer=SGD``) or as the override chose it (``optimizer=sgd``)."""
    if _same(params.get(key), wanted):
        return True
    target = params.get(f"{key}._target_")
    return target is not None and target.rpartition(".")[2].lower() == str(wanted).lower()


def _same(recorded: str | None, wanted: Any) -> bool:
    """A param as MLflow stored it (a string) against a value from the command line (a number, a string)."""
    if recorded is None:
        return False
    if recorded == str(wanted):
        return True
    try:
        number = float(recorded)
        return math.isclose(number, float(wanted)) or _shown_as(number, str(wanted))
    except (TypeError, ValueError):
        return False


def _shown_as(number: float, label_value: str) -> bool:
    """Whether a label could show ``number`` as ``label_value``: a value copied from a report's table, rounded
    to its significant digits (``LABEL_DIGITS`` or more) as ``_shown_values`` rounds."""
    mantissa = label_value.lower().lstrip("+-").partition("e")[0].replace(".", "").lstrip("0")
    digits = len(mantissa)
    return digits >= LABEL_DIGITS and float(f"{number:.{digits}g}") == float(label_value)


def compare_with_baseline(
    groups: Mapping[Configuration, Sequence[Any]],
    baseline: Configuration,
    metrics: Sequence[str],
    cfg: DictConfig,
) -> list[dict[str, Any]]:
    """One row per (metric, other configuration): the test, the difference, p, Holm's p, effect and verdict."""
    named = labels(list(groups))
    others = [c for c in sorted(groups, key=named.__getitem__) if c != baseline]
    lower = set(names_given(cfg.lower_is_better)) if cfg.lower_is_better is not None else None
    rows = []
    for metric in metrics:
        reference = by_seed(groups[baseline], metric)
        family = [comparison.compare(reference, by_seed(groups[c], metric), cfg.test) for c in others]
        higher = not (metric in lower if lower is not None else comparison.lower_is_better(metric))
        for config, result in zip(others, comparison.decide(family, cfg.alpha, higher), strict=True):
            rows.append(
                {
                    "metric": metric,
                    "configuration": named[config],
                    "test": result.test,
                    "n": f"{result.n_other} vs {result.n_baseline}",
                    "difference": result.difference,
                    "p": result.p,
                    "p (Holm)": result.p_holm,
                    "effect size (d)": result.effect_size,
                    "verdict": result.verdict,
                }
            )
    return rows


def _number(value: float, digits: int = 4) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def to_markdown(rows: list[dict[str, Any]], metrics: Sequence[str], confidence: float = 0.95) -> str:
    share = f"{confidence:.0%}"
    header = ["configuration", "n", *(h for m in metrics for h in (m, f"{m} {share} CI"))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["configuration"], str(row["n"])]
        for metric in metrics:
            mean, std = row[f"{metric} mean"], row[f"{metric} std"]
            low, high = row[f"{metric} ci_low"], row[f"{metric} ci_high"]
            cells.append(_number(mean) + ("" if math.isnan(std) else f" ± {std:.4f}"))
            cells.append("n too small" if math.isnan(low) else f"[{low:.4f}, {high:.4f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparisons_markdown(rows: list[dict[str, Any]]) -> str:
    header = ["metric", "configuration", "n", "test", "difference", "p", "p (Holm)", "effect size (d)", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["metric"],
            row["configuration"],
            row["n"],
            row["test"],
            f"{row['difference']:+.4f}" if not math.isnan(row["difference"]) else "n/a",
            _number(row["p"]),
            _number(row["p (Holm)"]),
            _number(row["effect size (d)"], 2),
            row["verdict"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def check_settings(cfg: DictConfig) -> None:
    if cfg.ci not in comparison.INTERVALS:
        raise UsageError(f"ci={cfg.ci} is not an interval explab computes; choose one of {list(comparison.INTERVALS)}")
    if cfg.test not in comparison.TESTS:
        raise UsageError(f"test={cfg.test} is not a paired test explab runs; choose one of {list(comparison.TESTS)}")
    if cfg.metrics is not None and not names_given(cfg.metrics):
        raise UsageError("metrics=[] names no metric; give one or more, e.g. metrics=[test/acc,val/acc_best]")
    if not 0 < cfg.alpha < 1 or not 0 < cfg.confidence < 1:
        raise UsageError(f"alpha={cfg.alpha} and confidence={cfg.confidence} must lie between 0 and 1")


# With metrics=null a report shows its task's headline metrics; the best-so-far metric the runs logged tells
# which task they trained (explab.models.tasks defines both; importing it here would load torch).
HEADLINE_METRICS = {
    "val/acc_best": ["test/acc", "test/f1", "val/acc_best"],
    "val/mse_best": ["test/mse", "test/r2", "val/mse_best"],
}


def headline_metrics(runs: Sequence[Any]) -> list[str]:
    """The headline metrics of the tasks ``runs`` trained, in ``HEADLINE_METRICS``' order; otherwise every
    ``test/`` metric and best-so-far value they logged."""
    logged = {name for run in runs for name in run.data.metrics}
    headline = [metric for best, metrics in HEADLINE_METRICS.items() if best in logged for metric in metrics]
    return headline or sorted(
        n for n in logged if n.startswith("test/") or (n.startswith("val/") and n.endswith("_best"))
    )


def names_given(value: Any) -> list[str]:
    """Names (of metrics, of experiments) as the config gives them: a list, or one name alone
    (``metrics=test/acc``), which would otherwise be read letter by letter."""
    return [value] if isinstance(value, str) else [str(name) for name in value]


def sweep_parent(client: Any, experiment_id: str, sweep: str) -> str:
    """The parent run id ``sweep=`` names: that id, or the study name of one of the experiment's sweeps."""
    parents = client.search_runs([experiment_id], filter_string="tags.`explab.sweep` = 'parent'", max_results=5000)
    if any(parent.info.run_id == sweep for parent in parents):
        return sweep
    named = [parent for parent in parents if parent.data.tags.get("optuna.study_name") == sweep]
    if len(named) == 1:
        return str(named[0].info.run_id)
    known = ", ".join(f"{p.data.tags.get('optuna.study_name')} ({p.info.run_id})" for p in parents) or "none"
    if named:
        raise UsageError(
            f"sweep={sweep} names {len(named)} sweeps of this experiment; give one's parent run id: {known}"
        )
    raise UsageError(f"sweep={sweep} is not a sweep of this experiment; give a study name or parent run id: {known}")


def other_data_note(runs: Sequence[Any]) -> str:
    """A note when the runs trained on data of different fingerprints (the ``data.fingerprint`` tag), as
    experiments on different data sets do: their numbers, and tests paired by seed, do not compare recipes on
    the same examples. "" when they share their data."""
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.data.tags.get("data.fingerprint", "not recorded")] += 1
    if len(counts) < 2:
        return ""
    said = ", ".join(f"{fingerprint} ({n} runs)" for fingerprint, n in sorted(counts.items()))
    log.warning("these runs trained on different data: %s", said)
    return (
        f"\nThese runs trained on different data (data.fingerprint {said}): their numbers, and a test paired by "
        "seed, do not compare configurations on the same examples.\n"
    )


def metrics_to_report(asked: list[str], runs: Sequence[Any], experiment_name: str) -> list[str]:
    """The asked metrics some run logged; a warning names each that none did (a typo, or another task's
    metric), and a UsageError lists what the runs logged when none of them is there."""
    logged = {name for run in runs for name in run.data.metrics}
    kept = [metric for metric in asked if metric in logged]
    offered = ", ".join(sorted(name for name in logged if not name.startswith("system/")))
    if not kept:
        raise UsageError(
            f"no run of '{experiment_name}' logged {', '.join(asked)}; give metrics=[...] from what they logged: "
            f"{offered}"
        )
    for metric in asked:
        if metric not in logged:
            log.warning(
                "no run of '%s' logged %s: left out of the report (they logged %s)", experiment_name, metric, offered
            )
    return kept


def report(cfg: DictConfig) -> str:
    from explab.tracking import TrackedRun, run_lifecycle
    from explab.tracking.plots import intervals_figure, save_figure
    from explab.tracking.store import open_client, shown_url

    check_settings(cfg)
    client = open_client(cfg.tracking_uri)
    names = names_given(cfg.experiment_name)  # one experiment, or several whose recipes are compared
    experiments = [client.get_experiment_by_name(name) for name in names]
    missing = [name for name, experiment in zip(names, experiments, strict=True) if experiment is None]
    if missing:
        known = sorted(e.name for e in client.search_experiments())
        raise UsageError(f"no experiment '{missing[0]}' in {shown_url(cfg.tracking_uri)}; there are: {known}")
    ids = [experiment.experiment_id for experiment in experiments if experiment is not None]
    title = " vs ".join(names)
    wanted = "attributes.status = 'FINISHED'"
    if cfg.get("sweep") and len(ids) > 1:
        raise UsageError(f"sweep={cfg.sweep} is one experiment's sweep: give that experiment alone")
    sweep = sweep_parent(client, ids[0], str(cfg.sweep)) if cfg.get("sweep") else None
    if sweep:  # one sweep's trials: its configurations, each over the seeds of its replicates
        wanted += f" and tags.`mlflow.parentRunId` = '{sweep}'"
    found = client.search_runs(ids, filter_string=wanted, max_results=5000)
    runs = [r for r in found if "explab.sweep" not in r.data.tags and "explab.report" not in r.data.tags]
    if not runs:
        of_sweep = f" in sweep {cfg.sweep}" if sweep else ""
        raise UsageError(f"experiment '{title}' has no FINISHED training runs{of_sweep} to report")
    asked = headline_metrics(runs) if cfg.metrics is None else names_given(cfg.metrics)
    metrics = metrics_to_report(asked, runs, title)
    groups = group_runs(runs)
    rows = aggregate(groups, metrics, cfg.ci, cfg.confidence)
    method = {"t": "Student t", "bootstrap": "percentile bootstrap", "pooled": "Student t, pooled deviation"}[cfg.ci]
    markdown = (
        f"# {title}: mean ± std over seeds, {cfg.confidence:.0%} confidence intervals ({method})\n\n"
        + to_markdown(rows, metrics, cfg.confidence)
    )
    markdown += other_data_note(runs)
    repeats = repeated_seeds(groups)
    if repeats:
        who = f"{repeats} runs repeat a seed of their" if repeats > 1 else "1 run repeats a seed of its"
        markdown += (
            f"\n{who} configuration (a reproduction or a rerun): each seed counts once, as the mean of its runs.\n"
        )
    tables: dict[str, list[dict[str, Any]]] = {"report.csv": rows}
    tags = {"explab.report": "true", "explab.report.runs": str(len(runs)), "explab.report.experiments": title}
    if cfg.baseline is not None:
        baseline = find_baseline(
            OmegaConf.to_object(cfg.baseline) if OmegaConf.is_config(cfg.baseline) else cfg.baseline, groups
        )
        compared = compare_with_baseline(groups, baseline, metrics, cfg)
        name = labels(list(groups))[baseline]
        markdown += (
            f"\n## Against the baseline ({name})\n\nPaired by seed where two or more seeds match "
            f"({'Wilcoxon signed-rank' if cfg.test == 'wilcoxon' else 'paired t-test'}), Welch's t-test otherwise; "
            f"p-values Holm-corrected per metric; verdict at alpha {cfg.alpha}.\n\n"
        )
        markdown += comparisons_markdown(compared) if compared else "No other configuration to compare.\n"
        tags["explab.report.baseline"] = name
        if compared:
            tables["comparisons.csv"] = compared
    print(markdown)
    opened = run_lifecycle(lambda: TrackedRun.create(cfg.tracking_uri, names[0], run_name="report", tags=tags))
    with opened as run, tempfile.TemporaryDirectory(prefix="explab-report-") as folder:
        (Path(folder) / "report.md").write_text(markdown)
        run.log_file(Path(folder) / "report.md", "report")
        for file_name, table in tables.items():
            to_csv(table, Path(folder) / file_name)
            run.log_file(Path(folder) / file_name, "report")
        figure = save_figure(intervals_figure(rows, metrics, cfg.confidence), Path(folder) / "intervals.png")
        run.log_file(figure, "report")
    log.info("report logged on MLflow run %s", run.run_id)
    return markdown


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="report")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> str:
    return report(cfg)


def main() -> None:
    """Console script ``explab-report``; ``experiment=NAME`` means ``experiment_name=NAME``.

    explab-train chooses an experiment with ``experiment=NAME`` and tracks it under that name; here
    ``experiment`` would be taken for the config group of that name, so the words a user already knows are
    turned into the key this config has.
    """
    import sys

    from explab.cli import run_hydra_app

    sys.argv = [f"experiment_name={a.split('=', 1)[1]}" if a.startswith("experiment=") else a for a in sys.argv]
    run_hydra_app(_hydra_main, config_name="report")


if __name__ == "__main__":
    main()
