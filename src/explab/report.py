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
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from explab import comparison
from explab.cli import refuse_unread_additions, report_user_errors
from explab.config import config_dir, paths_from_launch_folder
from explab.configurations import (
    FINGERPRINT_TAG,
    TEST_FINGERPRINT_TAG,
    Configuration,
    by_seed,
    group_runs,
    has_setting,
    label_order,
    labels,
    repeated_seeds,
    seed_of,
    unfinished_seeds,
)
from explab.errors import UsageError, counted, first_line
from explab.tracking.environment import CHECKOUT_TAG, code_mix, hardware_mix, recorded_checkouts
from explab.tracking.params import trained_params
from explab.tracking.store import every_run
from explab.utils.logging import get_logger

log = get_logger(__name__)


def aggregate(
    groups: Mapping[Configuration, Sequence[Any]],
    metrics: Sequence[str],
    ci: str = "t",
    confidence: float = 0.95,
    unfinished: Mapping[Configuration, Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """One row per configuration (``group_runs``): what sets it apart, n, seeds, and mean, std and interval of
    each metric; given ``unfinished`` (``unfinished_seeds``), how many seeds did not finish."""
    named = labels(list(groups))
    found_by_metric = {
        metric: comparison.intervals_of(
            [list(by_seed(members, metric).values()) for members in groups.values()], ci, confidence, metric=metric
        )
        for metric in metrics
    }
    rows = []
    for i, (config, members) in enumerate(groups.items()):
        seeds = {seed_of(r) for r in members}
        row: dict[str, Any] = {"configuration": named[config], "n": len(seeds), "seeds": " ".join(sorted(seeds))}
        if unfinished is not None:
            row["not finished"] = len(unfinished.get(config, {}))
        for metric in metrics:
            found = found_by_metric[metric][i]
            row |= {
                f"{metric} mean": found.mean,
                f"{metric} std": found.std,
                f"{metric} ci_low": found.low,
                f"{metric} ci_high": found.high,
                f"{metric} n": found.n,  # the seeds that logged it: fewer than n where some did not
            }
        rows.append(row)
    return sorted(rows, key=lambda r: label_order(r["configuration"]))


def find_baseline(spec: Any, groups: Mapping[Configuration, Sequence[Any]]) -> Configuration:
    """The one configuration ``spec`` names: a run name, a run id, or a mapping of params it must have."""

    def matches(run: Any) -> bool:
        if isinstance(spec, Mapping):
            params = trained_params(run.data.params, run.data.tags)
            return all(has_setting(params, str(k), v) for k, v in spec.items())
        return str(spec) in (run.info.run_id, run.info.run_name)

    found = [config for config, members in groups.items() if any(map(matches, members))]
    named = labels(list(groups))
    if not found:
        names = sorted({r.info.run_name for members in groups.values() for r in members})
        params = {k for config in groups for k, _ in config}
        parts = [part for label in named.values() for part in label_parts(label)]
        offered = [(k, v) for k, v in parts if k in params or f"{k}._target_" in params]
        # a plain value shows the form best; a list ([32, 64]) does too, where nothing else varies
        key, value = next((p for p in offered if re.fullmatch(r"[\w.+-]+", p[1])), next(iter(offered), ("seed", "1")))
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


def label_parts(label: str) -> list[tuple[str, str]]:
    """A label's (key, value) parts: ``model.backbone.channels=[32, 64], optimizer=SGD`` is two, the comma
    inside the list is not a separator."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(label):
        depth += (char in "[{(") - (char in "]})")
        if depth == 0 and label.startswith(", ", i):
            parts.append(label[start:i])
            start = i + 2
    parts.append(label[start:])
    return [(key, value) for key, _, value in (part.partition("=") for part in parts if "=" in part)]


def compare_with_baseline(
    groups: Mapping[Configuration, Sequence[Any]],
    baseline: Configuration,
    metrics: Sequence[str],
    cfg: DictConfig,
) -> list[dict[str, Any]]:
    """One row per (metric, other configuration): the test, the difference, p, Holm's p, effect and verdict."""
    named = labels(list(groups))
    others = [c for c in sorted(groups, key=lambda c: label_order(named[c])) if c != baseline]
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
                    "smallest p": result.smallest_p,
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
            cells.append(_interval_cell(low, high, row[f"{metric} n"], row["n"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _interval_cell(low: float, high: float, logged: int, seeds: int) -> str:
    """A metric's interval as the table shows it, saying how many of the configuration's seeds logged the
    metric where not all did (a recipe that does not validate logs no ``val/`` metric; a run with
    ``test=false`` no ``test/``)."""
    if logged == 0:
        return "not logged"
    of = f"{logged} of {seeds} logged it" if logged < seeds else ""
    if math.isnan(low):
        return f"n too small ({of})" if of else "n too small"
    said = "; ".join(part for part in (of, "the seeds tie" if low == high else "") if part)
    return f"[{low:.4f}, {high:.4f}]" + (f" ({said})" if said else "")


def tied_seeds_note(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], ci: str) -> str:
    """A note when an interval has no width because its seeds tied; "" otherwise. Seeds of a coarse metric tie
    often (an accuracy on a few hundred examples moves in steps of a fraction of a percent), and an interval
    of no width would read as a mean known exactly."""
    tied = any(
        row[f"{metric} n"] >= comparison.MIN_REPEATS and row[f"{metric} ci_low"] == row[f"{metric} ci_high"]
        for row in rows
        for metric in metrics
    )
    if not tied:
        return ""
    instead = "" if ci == "pooled" else " ci=pooled takes the spread from the seeds of every configuration."
    return (
        "\nAn interval of no width says that its seeds gave one value, not that the mean is known exactly: a "
        f"metric measured on a few hundred examples moves in steps, and seeds often land on the same one.{instead}\n"
    )


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


def too_few_for_ranks_note(rows: Sequence[Mapping[str, Any]], alpha: float) -> str:
    """A note where a rank test's verdict is "n too small" with two or more runs a side: over so few runs it
    gives no p below ``alpha`` whatever they show, which a verdict of "indistinguishable" would have hidden;
    "" otherwise."""
    floors = sorted(
        {
            (row["test"], row["n"], row["smallest p"])
            for row in rows
            if row["verdict"] == "n too small" and row["smallest p"] >= alpha
        }
    )
    if not floors:
        return ""
    said = "; ".join(f"{test} over {n} runs: no p below {p:.4f}" for test, n, p in floors)
    return (
        f'\n"n too small" beside a rank test: over so few runs it cannot give a p below alpha {alpha:g} '
        f"whatever they show ({said}), so it cannot call a configuration better or worse. More seeds can.\n"
    )


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
    if cfg.get("commit") is not None:
        commit_prefix(cfg.commit)


# With metrics=null a report shows its task's headline metrics; the best-so-far metric the runs logged tells
# which task they trained (explab.models.tasks defines both; importing it here would load torch).
HEADLINE_METRICS = {
    "val/acc_best": ["test/acc", "test/f1", "val/acc_best"],
    "val/mse_best": ["test/mse", "test/r2", "val/mse_best"],
}


def headline_metrics(runs: Sequence[Any]) -> list[str]:
    """The headline metrics of the tasks ``runs`` trained that they logged, in ``HEADLINE_METRICS``' order (a fit
    without validation logs no ``val/``); otherwise every ``test/`` metric and best-so-far value they logged."""
    logged = {name for run in runs for name in run.data.metrics}
    headline = [m for metrics in HEADLINE_METRICS.values() if logged & set(metrics) for m in metrics if m in logged]
    return headline or sorted(
        n for n in logged if n.startswith("test/") or (n.startswith("val/") and n.endswith("_best"))
    )


def names_given(value: Any) -> list[str]:
    """Names (of metrics, of experiments) as the config gives them: a list, or one name alone
    (``metrics=test/acc``), which would otherwise be read letter by letter."""
    return [value] if isinstance(value, str) else [str(name) for name in value]


def sweep_parent(client: Any, experiment_id: str, sweep: str) -> str:
    """The parent run id ``sweep=`` names: that id, or the study name of one of the experiment's sweeps."""
    parents = every_run(client, [experiment_id], "tags.`explab.sweep` = 'parent'")
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
        counts[run.data.tags.get(FINGERPRINT_TAG, "not recorded")] += 1
    if len(counts) < 2:
        return ""
    said = ", ".join(f"{fingerprint} ({counted(n, 'run')})" for fingerprint, n in sorted(counts.items()))
    log.warning("these runs trained on different data: %s", said)
    return (
        f"\nThese runs trained on different data (data.fingerprint {said}): their numbers, and a test paired by "
        "seed, do not compare configurations on the same examples.\n"
    )


def other_test_set_note(runs: Sequence[Any], metrics: Sequence[str]) -> str:
    """A note when runs of one seed on the same data were tested on different test sets (their
    ``data.test_fingerprint`` tags; runs recorded before them are left out): a configuration that cuts the
    split otherwise (``data.test_fraction``) is tested on other examples, and its ``test/`` numbers, and a
    test paired by seed, compare the sets as much as the configurations. Only runs of one seed are compared,
    since a seed may cut its own split (digits is split by seed). "" otherwise, and where the data differs
    (``other_data_note`` says so)."""
    if not any(metric.startswith("test/") for metric in metrics):
        return ""
    if len({run.data.tags.get(FINGERPRINT_TAG) for run in runs}) > 1:
        return ""
    sets: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        if run.data.tags.get(TEST_FINGERPRINT_TAG):
            sets[seed_of(run)].add(run.data.tags[TEST_FINGERPRINT_TAG])
    seeds = sorted((seed for seed, tested in sets.items() if len(tested) > 1), key=_seed_order)
    if not seeds:
        return ""
    said = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"
    log.warning("runs of one seed were tested on different test sets (%s)", said)
    return (
        f"\nRuns of one seed were tested on different test sets ({said}: their data.test_fingerprint differs, as "
        "a setting that cuts the split, such as data.test_fraction, makes it): their test/ numbers, and a test "
        "paired by seed, compare the test sets as much as the configurations.\n"
    )


def other_hardware_note(runs: Sequence[Any], metrics: Sequence[str]) -> str:
    """A note when the runs trained on different hardware (``hardware.*`` tags; runs recorded before them are
    left out): a timing (``perf/``) then compares machines as much as configurations, and the same seed gives
    other numbers on each. "" when they share their hardware."""
    said = hardware_mix(run.data.tags for run in runs)
    if not said:
        return ""
    timed = [metric for metric in metrics if metric.startswith("perf/")]
    # only a timing is misread for it; other metrics move by about what a seed moves them
    (log.warning if timed else log.info)("these runs trained on different hardware: %s", said)
    meaning = (
        f"{', '.join(timed)} compare{'s' if len(timed) == 1 else ''} machines as much as configurations"
        if timed
        else "the same seed gives other numbers on each"
    )
    return f"\nThese runs trained on different hardware ({said}): {meaning}.\n"


def other_code_note(runs: Sequence[Any]) -> str:
    """A note when the runs trained from different code: another commit or uncommitted change of explab's
    checkout or of a package's own (a lab's), or other versions of the libraries (``git.*`` and ``version.*``
    tags). What changed between them is then counted as a difference between configurations, or as seed noise
    within one. "" when they share their code."""
    said = code_mix(run.data.tags for run in runs)
    if not said:
        return ""
    log.info("these runs trained from different code: %s", said)
    # commit= selects by the commit of explab's checkout or a lab's; a version by a filter
    narrow = (
        "To report one commit's runs, add commit=COMMIT"
        if any(CHECKOUT_TAG.match(kind) for kind in said.split("; "))
        else "To report the runs of one, add filter= on the tag named here (tags.`TAG` LIKE 'VALUE%')"
    )
    return (
        f"\nThese runs trained from different code ({said}): where the change touched what trains, it counts as "
        f"a difference between configurations, or as seed noise within one. {narrow}.\n"
    )


def small_bootstrap_note(rows: Sequence[Mapping[str, Any]], ci: str) -> str:
    """A note when ``ci=bootstrap`` gave intervals over fewer seeds than a percentile bootstrap needs to keep its
    level; "" otherwise."""
    few = sorted({row["n"] for row in rows if comparison.MIN_REPEATS <= row["n"] < comparison.BOOTSTRAP_MIN_VALUES})
    if ci != "bootstrap" or not few:
        return ""
    return (
        f"\nThese percentile bootstrap intervals of {' or '.join(map(str, few))} seeds are narrower than their "
        "level says: of two seeds it is their range, which holds the mean half the time, and it keeps its level "
        f"only from about {comparison.BOOTSTRAP_MIN_VALUES} seeds on. Use ci=t, or ci=pooled where the "
        "configurations share their seed noise.\n"
    )


def training_runs(found: Sequence[Any], commit: Any = None) -> list[Any]:
    """The runs of ``found`` that trained (not a sweep's parent, not a report), of ``commit`` when given."""
    runs = [r for r in found if "explab.sweep" not in r.data.tags and "explab.report" not in r.data.tags]
    if commit:  # of explab's checkout or a lab's: tags MLflow's filter cannot join with "or"
        prefix = commit_prefix(commit)
        runs = [r for r in runs if _trained_from_commit(r.data.tags, prefix)]
    return runs


def unfinished_runs(client: Any, experiment_ids: list[str], scope: str = "", commit: Any = None) -> list[Any]:
    """The training runs that did not finish (FAILED, KILLED, RUNNING) and recorded their params, ``scope``
    (`` and ...`` clauses of an MLflow filter) and ``commit`` selecting as they select the finished ones. A
    pruned trial is not one: the search stopped it, which says nothing against its configuration."""
    return [
        r
        for r in _not_finished(client, experiment_ids, scope, commit)
        if r.data.params and r.data.tags.get("optuna.trial_state") != "PRUNED"
    ]


def _not_finished(client: Any, experiment_ids: list[str], scope: str, commit: Any) -> list[Any]:
    """Every training run ``scope`` and ``commit`` select whose status is not FINISHED."""
    return training_runs(every_run(client, experiment_ids, f"attributes.status != 'FINISHED'{scope}"), commit)


UNFINISHED_SHOWN = 12  # configurations the note names one by one; a failed sweep's many more are counted


def unfinished_note(
    groups: Mapping[Configuration, Sequence[Any]], unfinished: Mapping[Configuration, Mapping[str, str]]
) -> str:
    """A note naming each configuration whose seeds did not all finish, and those of which none did; "" when
    every seed finished. The table's means stand on the seeds that finished: a configuration that loses seeds
    to divergence looks as good as its survivors there."""
    if not unfinished:
        return ""
    in_rows = labels(list(groups))
    everyone = labels([*groups, *(c for c in unfinished if c not in groups)])
    lines = []
    for config, seeds in unfinished.items():
        by_status: dict[str, list[str]] = defaultdict(list)
        for seed, status in seeds.items():
            by_status[status].append(seed)
        how = ", ".join(
            f"{f'{len(s)} ' if len(by_status) > 1 else ''}{status} "
            f"({'seed' if len(s) == 1 else 'seeds'} {', '.join(sorted(s, key=_seed_order))})"
            for status, s in sorted(by_status.items())
        )
        finished = {seed_of(r) for r in groups.get(config, ())}
        which = (
            f"{len(seeds)} of {len(seeds) + len(finished)} seeds did not finish"
            if finished
            else f"none of its {counted(len(seeds), 'seed')} finished"
        )
        lines.append((in_rows.get(config) or everyone[config], f"{which}: {how}"))
    lines.sort(key=lambda line: label_order(line[0]))
    shown = [f"- {name}: {said}" for name, said in lines[:UNFINISHED_SHOWN]]
    if len(lines) > UNFINISHED_SHOWN:
        shown.append(f"- and {counted(len(lines) - UNFINISHED_SHOWN, 'configuration')} more")
    running = any("RUNNING" in seeds.values() for seeds in unfinished.values())
    return (
        "\nSeeds that did not finish are in no row: a configuration that loses seeds (to divergence, say) is less "
        "reliable than the seeds that finished show. Each run says why in its tag explab.status_reason"
        + ("; a seed still RUNNING joins its row once it finishes" if running else "")
        + ".\n\n"
        + "\n".join(shown)
        + "\n"
    )


def _seed_order(seed: str) -> tuple[bool, int, str]:
    """Seeds as numbers where they are (2 before 10), others after them as text."""
    return (not seed.isdigit(), int(seed) if seed.isdigit() else 0, seed)


def _unfinished_counts(client: Any, experiment_ids: list[str], scope: str = "", commit: Any = None) -> str:
    """What the training runs ``scope`` and ``commit`` select did instead of finishing, counted by status
    (``2 FAILED, 1 KILLED``); "" when there are none."""
    statuses = Counter(r.info.status for r in _not_finished(client, experiment_ids, scope, commit))
    return ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))


WHY_NOT_FINISHED = "each says why in its tag explab.status_reason"


# a params. key of an MLflow filter: a plain name, or one in backticks
_FILTERED_PARAM = re.compile(r"params\.(`[^`]+`|[\w./-]+)")
VALUES_SHOWN = 8


def _left_out(client: Any, experiment_ids: list[str], given_filter: str | None) -> list[str]:
    """How many FINISHED training runs a sweep, commit or filter that matched none left out, and the values
    each param the filter names holds among them: MLflow compares params as the text they were logged as, so
    ``params.optimizer.lr = "0.010"`` matches no run of 0.01. Nothing when the experiment has none to leave."""
    finished = training_runs(every_run(client, experiment_ids, "attributes.status = 'FINISHED'"))
    if not finished:
        return []
    said = [f"this leaves out the experiment's {counted(len(finished), 'FINISHED training run')}"]
    for key in dict.fromkeys(m.strip("`") for m in _FILTERED_PARAM.findall(given_filter or "")):
        values = sorted(
            {r.data.params[key] for r in finished if key in r.data.params}, key=lambda v: label_order(f"{key}={v}")
        )
        shown = ", ".join(f'"{v}"' for v in values[:VALUES_SHOWN]) + (", ..." if len(values) > VALUES_SHOWN else "")
        said.append(f"params.{key} is {shown} there" if values else f"none logs params.{key}")
    return said


def metrics_to_report(asked: list[str], runs: Sequence[Any], experiment_name: str) -> list[str]:
    """The asked metrics some run logged; a warning names each that none did (a typo, or another task's
    metric), and a UsageError lists what the runs logged when none of them is there."""
    logged = {name for run in runs for name in run.data.metrics}
    kept = [metric for metric in asked if metric in logged]
    offered = ", ".join(sorted(name for name in logged if not name.startswith("system/")))
    if not kept:
        # metrics=null asks for none by name when the runs logged no test/ metric nor best value: a smoke test's
        # runs (Lightning's fast_dev_run logs neither)
        what = ", ".join(asked) or "a test/ metric or a best validation value (trainer=fast_dev_run logs neither)"
        raise UsageError(
            f"no run of '{experiment_name}' logged {what}; give metrics=[...] from what they logged: {offered}"
        )
    for metric in asked:
        if metric not in logged:
            log.warning(
                "no run of '%s' logged %s: left out of the report (they logged %s)", experiment_name, metric, offered
            )
    return kept


def commit_prefix(given: Any) -> str:
    """``commit=`` as the start of a commit hash, in lower case; a ``UsageError`` for anything else."""
    if isinstance(given, float):  # 1558e31: Hydra reads a hash of digits around one "e" as a number
        raise UsageError(
            f"commit={given} was read as a number, not a hash: quote the hash for Hydra, 'commit=\"1558e31\"'"
        )
    prefix = str(given).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,40}", prefix):
        raise UsageError(
            f"commit={given} is not a commit: give its hash or the start of it, 4 hex digits at least, as the "
            "runs' tag git.commit (or a lab's git.PACKAGE.commit) shows it (commit=1a2b3c4)"
        )
    return prefix


def _trained_from_commit(tags: Mapping[str, str], prefix: str) -> bool:
    """Whether a run's commit of explab's checkout (``git.commit``) or of a lab's package (``git.PACKAGE.commit``)
    starts with ``prefix``."""
    return any(tags[f"{checkout}commit"].lower().startswith(prefix) for checkout in recorded_checkouts(tags))


def runs_matching(client: Any, experiment_ids: list[str], wanted: str, given: str | None) -> list[Any]:
    """The runs ``wanted`` selects; a ``filter=`` MLflow cannot read (``given``) is a ``UsageError`` with
    MLflow's reason and the form it takes."""
    from mlflow.exceptions import MlflowException

    try:
        return every_run(client, experiment_ids, wanted)
    except MlflowException as error:
        if not given:
            raise
        raise UsageError(
            f'filter="{given}" is not a filter MLflow can read: {first_line(error)}. Give clauses joined by "and", '
            "each a params., metrics., tags. or attributes. key, an operator and a quoted value, the whole "
            """quoted for Hydra: 'filter="params.optimizer.lr = \\"0.01\\" and tags.git.dirty = \\"false\\""'"""
        ) from None


def report(cfg: DictConfig) -> str:
    from explab.tracking import TrackedRun, run_lifecycle
    from explab.tracking.plots import intervals_figure, save_figure
    from explab.tracking.store import (
        TrackingStoreError,
        check_recordable,
        deleted_experiment,
        open_recorded_store,
        shown_url,
    )

    check_settings(cfg)
    client = open_recorded_store(cfg.tracking_uri)
    names = names_given(cfg.experiment_name)  # one experiment, or several whose recipes are compared
    experiments = [client.get_experiment_by_name(name) for name in names]
    missing = [name for name, experiment in zip(names, experiments, strict=True) if experiment is None]
    if missing:
        known = sorted(e.name for e in client.search_experiments())
        raise UsageError(f"no experiment '{missing[0]}' in {shown_url(cfg.tracking_uri)}; there are: {known}")
    for experiment in experiments:
        if experiment is not None and experiment.lifecycle_stage == "deleted":  # its runs are in the trash too
            raise deleted_experiment(cfg.tracking_uri, experiment.name, experiment.experiment_id)
    ids = [experiment.experiment_id for experiment in experiments if experiment is not None]
    title = " vs ".join(names)
    if cfg.get("sweep") and len(ids) > 1:
        raise UsageError(f"sweep={cfg.sweep} is one experiment's sweep: give that experiment alone")
    sweep = sweep_parent(client, ids[0], str(cfg.sweep)) if cfg.get("sweep") else None
    scope = ""
    if sweep:  # one sweep's trials: its configurations, each over the seeds of its replicates
        scope += f" and tags.`mlflow.parentRunId` = '{sweep}'"
    if cfg.get("filter"):
        scope += f" and {cfg.filter}"
    finished = runs_matching(client, ids, f"attributes.status = 'FINISHED'{scope}", cfg.get("filter"))
    runs = training_runs(finished, cfg.get("commit"))
    if not runs:
        of_sweep = f" in sweep {cfg.sweep}" if sweep else ""
        of_commit = f" of commit {cfg.commit}" if cfg.get("commit") else ""
        matching = of_commit + (f' matching "{cfg.filter}"' if cfg.get("filter") else "")
        narrowed = bool(scope or cfg.get("commit"))
        left_out = _left_out(client, ids, cfg.get("filter")) if narrowed else []
        others = _unfinished_counts(client, ids, scope, cfg.get("commit"))
        if others:
            left_out.append(f"{'of the runs it selects, ' if left_out else 'its runs: '}{others}; {WHY_NOT_FINISHED}")
        said = f" ({'; '.join(left_out)})" if left_out else ""
        raise UsageError(f"experiment '{title}' has no FINISHED training runs{of_sweep}{matching} to report{said}")
    asked = headline_metrics(runs) if cfg.metrics is None else names_given(cfg.metrics)
    metrics = metrics_to_report(asked, runs, title)
    groups = group_runs(runs)
    unfinished = unfinished_seeds(groups, unfinished_runs(client, ids, scope, cfg.get("commit")))
    rows = aggregate(groups, metrics, cfg.ci, cfg.confidence, unfinished)
    method = {"t": "Student t", "bootstrap": "percentile bootstrap", "pooled": "Student t, pooled deviation"}[cfg.ci]
    markdown = (
        f"# {title}: mean ± std over seeds, {cfg.confidence:.0%} confidence intervals ({method})\n\n"
        + to_markdown(rows, metrics, cfg.confidence)
    )
    markdown += small_bootstrap_note(rows, cfg.ci) + tied_seeds_note(rows, metrics, cfg.ci)
    markdown += unfinished_note(groups, unfinished)
    markdown += other_data_note(runs) + other_test_set_note(runs, metrics)
    markdown += other_hardware_note(runs, metrics) + other_code_note(runs)
    repeats = repeated_seeds(groups)
    if repeats:
        who = f"{repeats} runs repeat a seed of their" if repeats > 1 else "1 run repeats a seed of its"
        markdown += (
            f"\n{who} configuration (a reproduction or a rerun): each seed counts once, as the mean of its runs.\n"
        )
    tables: dict[str, list[dict[str, Any]]] = {"report.csv": rows}
    tags = {"explab.report": "true", "explab.report.runs": str(len(runs)), "explab.report.experiments": title}
    tags.update({f"explab.report.{key}": str(cfg[key]) for key in ("commit", "filter") if cfg.get(key)})
    if cfg.baseline is not None:
        baseline = find_baseline(
            OmegaConf.to_object(cfg.baseline) if OmegaConf.is_config(cfg.baseline) else cfg.baseline, groups
        )
        compared = compare_with_baseline(groups, baseline, metrics, cfg)
        name = labels(list(groups))[baseline]
        markdown += (
            f"\n## Against the baseline ({name})\n\nPaired by seed where two or more seeds match "
            f"({'Wilcoxon signed-rank' if cfg.test == 'wilcoxon' else 'paired t-test'}), Welch's t-test otherwise; "
            "a rank test (Wilcoxon signed-rank, Mann-Whitney U) where the differences, or each side's values, "
            f"do not vary; p-values Holm-corrected per metric; verdict at alpha {cfg.alpha}.\n\n"
        )
        markdown += comparisons_markdown(compared) if compared else "No other configuration to compare.\n"
        markdown += too_few_for_ranks_note(compared, cfg.alpha)
        tags["explab.report.baseline"] = name
        if compared:
            tables["comparisons.csv"] = compared
    print(markdown)
    try:
        check_recordable(cfg.tracking_uri)
    except TrackingStoreError as error:  # a colleague's store, which this account may only read
        log.warning("the report is not logged in MLflow: %s", error)
        return markdown
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
    paths_from_launch_folder(cfg)
    refuse_unread_additions(cfg, "report")
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
