"""Runs grouped into configurations, and each configuration named by what sets it apart.

A configuration is a run's params minus what differs between repeats of one recipe (the seed, where the run
wrote, what it only records); its runs are that recipe's seeds. ``explab-report`` tables and tests them, the
notebooks plot them, and the labels here are what both call them.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from explab.tracking.params import describes_training, trained_params

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
    "trainer.log_every_n_steps",
    # the batches a run validates and tests in: the model in eval mode gives every sample the same answer
    "data.eval_batch_size",
)
# how often last.ckpt is written (a test's min_interval_seconds=0) trains nothing differently
REPEAT_PREFIXES = ("optuna_trial.", "logger.", "time_to.", "callbacks.last_checkpoint.")
# the tag a run records the fingerprint of its data in (``tracking.record``)
FINGERPRINT_TAG = "data.fingerprint"
# and of its test split as the model saw it: explab-eval logs into a run only a test of that set
TEST_FINGERPRINT_TAG = "data.test_fingerprint"
# a label's numbers keep at least this many significant digits, more only where two values need them to differ
LABEL_DIGITS = 4
# a label of more parts than this reads as what its configuration changes from the common settings instead
MAX_LABEL_PARTS = 6
COMMON = "common settings"

Configuration = tuple[tuple[str, str], ...]


def sets_apart(key: str) -> bool:
    """Whether a param can tell two configurations apart (a seed or an output folder cannot)."""
    return describes_training(key) and key not in REPEAT_KEYS and not key.startswith(REPEAT_PREFIXES)


def configuration_of(params: dict[str, str], fingerprint: str | None = None) -> Configuration:
    """A run's configuration: its params that ``sets_apart``, sorted by key.

    Given the fingerprint of the data the run read (its ``data.fingerprint`` tag), the folder or file it read
    the data from (a ``data.`` param whose value is an absolute path or a URL) gives way to that fingerprint:
    the same files read from another place (a laptop's project, a cluster's scratch space) train the same
    configuration, and other files read from the same place do not.
    """
    kept = {k: v for k, v in params.items() if sets_apart(k)}
    places = [k for k, v in kept.items() if k.startswith("data.") and _is_place(v)]
    if fingerprint and places:
        kept = {k: v for k, v in kept.items() if k not in places} | {FINGERPRINT_TAG: fingerprint}
    return tuple(sorted(kept.items()))


def _is_place(value: str) -> bool:
    """Whether a recorded value names a place: an absolute path, or a URL (``s3://bucket/data``)."""
    return value.startswith("/") or "://" in value


def group_runs(runs: Sequence[Any]) -> dict[Configuration, list[Any]]:
    """Runs by configuration, each group one configuration's seed repeats; a run resumed with other settings
    is grouped by what it trained (``trainer.max_epochs=20 (resumed from 10)``)."""
    groups: dict[Configuration, list[Any]] = defaultdict(list)
    for run in runs:
        params = trained_params(run.data.params, run.data.tags)
        groups[configuration_of(params, run.data.tags.get(FINGERPRINT_TAG))].append(run)
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
    A setting only some configurations have, the same in each of them, is left out where the rest of the
    label tells them apart (``optimizer=SGD``, not ``optimizer=SGD, optimizer.momentum=0.9`` beside Adam).
    """
    shown = _shown_values(configurations)
    settings = [{k: shown[k, v] for k, v in c} for c in configurations]
    varying = sorted({k for s in settings for k in s if len({t.get(k) for t in settings}) > 1})
    # a class's own defaults (SGD's momentum, nesterov) vary only by being absent from the other classes
    comes_along = {
        k
        for k in varying
        if any(k not in s for s in settings)
        and len({s[k] for s in settings if k in s}) == 1
        and _goes_with_a_choice(k, varying)
    }
    essential = [k for k in varying if k not in comes_along]
    # the data's fingerprint changes with any setting that reshapes the data (data.max_len): said only where
    # nothing else tells the configurations apart, as for the same settings on other files
    told = [k for k in essential if k != FINGERPRINT_TAG]
    tries = [(keys, True) for keys in (told, essential) if all(any(k in s for k in keys) for s in settings)]
    # the last: two subtrees told apart only below their entries, every setting as it is
    for keys, fold in [*tries, (varying, True), (varying, False)]:
        named = [_label(s, keys, settings, fold) for s in settings]
        if len(set(named)) == len(named):
            break
    if max(label.count(", ") + 1 for label in named) > MAX_LABEL_PARTS:
        named = _departures(settings, varying, comes_along) or named
    return dict(zip(configurations, named, strict=True))


def _goes_with_a_choice(key: str, varying: list[str]) -> bool:
    """Whether ``key`` goes with a choice that varies: it lies in a subtree whose class or whole value varies
    (``optimizer.momentum`` where the optimizer's class does, ``callbacks.early_stopping.patience`` beside
    ``callbacks={}``), or it is such a subtree's whole value (``callbacks={}``). A setting added on its own
    (``+trainer.overfit_batches=2``) is a choice of its own, however constant: a run that trained on two
    batches read as ``trainer.max_epochs=30`` alone."""
    if any(k.startswith(f"{key}.") for k in varying):
        return True
    segments = key.split(".")
    trees = (".".join(segments[:depth]) for depth in range(1, len(segments)))
    return any(tree in varying or (f"{tree}._target_" in varying and f"{tree}._target_" != key) for tree in trees)


def _departures(settings: list[dict[str, str]], varying: list[str], comes_along: set[str]) -> list[str] | None:
    """Each configuration as what it changes from the settings most configurations share (``trainer.max_epochs=1``
    beside twenty runs of 2), the one that changes nothing as ``COMMON``: an experiment a researcher has tried
    one thing at a time in would otherwise label every row with every setting any row changed. A subtree it
    keeps less of reads as the entries it keeps (``callbacks=model_checkpoint``). None where two configurations
    would read the same."""
    absent = object()
    common = {k: Counter(s.get(k, absent) for s in settings).most_common(1)[0][0] for k in varying}
    named = []
    for setting in settings:
        changed = [k for k in varying if setting.get(k, absent) != common[k]]
        replaced = [k for k in changed if k in setting]
        # a class other than the common one brings its own settings and drops the common class's: its name says both
        classes = [k.removesuffix("._target_") for k in replaced if k.endswith("._target_")] + replaced
        parts = {
            k: _part(k, setting[k])
            for k in replaced
            if not (k in comes_along and any(k.startswith(f"{tree}.") for tree in classes if tree != k))
        }
        for key in changed:
            # a key it lacks is said by the setting that took its place (scheduler=None for scheduler.T_max)
            if key in setting or any(key.startswith(f"{tree}.") for tree in classes):
                continue
            tree = _kept_subtree(key, setting)
            if tree is None:
                parts[key] = f"no {key}"
                continue
            parts[tree] = f"{tree}={_entries(tree, setting)}"
        named.append(", ".join(dict.fromkeys(parts[k] for k in sorted(parts))) or COMMON)
    return named if len(set(named)) == len(named) else None


def _kept_subtree(key: str, setting: dict[str, str]) -> str | None:
    """The innermost subtree above ``key`` that ``setting`` still holds something of, or None."""
    segments = key.split(".")
    for depth in range(len(segments) - 1, 0, -1):
        tree = ".".join(segments[:depth])
        if any(k.startswith(f"{tree}.") for k in setting):
            return tree
    return None


def label_order(label: str) -> list[tuple[str, int, float, str]]:
    """A sort key that reads a label's numbers as numbers: ``optimizer.lr=1e-05`` before ``optimizer.lr=0.001``,
    and ``depth=2`` before ``depth=10``, where the text alone would put them the other way round."""
    key: list[tuple[str, int, float, str]] = []
    for part in label.split(", "):
        name, equals, value = part.rpartition("=")
        if not equals:  # an experiment's name, "all": the part is its own name
            name, value = part, ""
        try:
            key.append((name, 0, float(value), ""))
        except ValueError:
            key.append((name, 1, 0.0, value))
    return key


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
            parts[tree] = _part(f"{tree}._target_", target) if target else f"{tree}={_entries(tree, setting)}"
    # a group's class and the subtree folded into it can read alike (scheduler=CosineAnnealingLR): said once
    return ", ".join(dict.fromkeys(parts.values())) or "all"


def _entries(tree: str, setting: dict[str, str]) -> str:
    """The entries ``setting`` holds directly under ``tree``, joined by ``+`` (``early_stopping+lr_monitor``)."""
    return "+".join(sorted({k.removeprefix(f"{tree}.").split(".")[0] for k in setting if k.startswith(f"{tree}.")}))


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


def seed_of(run: Any) -> str:
    """The seed a run trained with; a run that records none stands for a seed of its own."""
    return str(run.data.params.get("seed", run.info.run_id))


def by_seed(runs: Sequence[Any], metric: str) -> dict[str, float]:
    """Seed -> value of ``metric``. A seed trained more than once (a reproduction, a rerun) is one sample, the
    mean of its runs: counted twice, it would add to n without adding a seed, and narrow the interval."""
    values: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        if metric in run.data.metrics:
            values[seed_of(run)].append(run.data.metrics[metric])
    return {seed: statistics.fmean(found) for seed, found in values.items()}


def unfinished_seeds(
    groups: Mapping[Configuration, Sequence[Any]], unfinished: Sequence[Any]
) -> dict[Configuration, dict[str, str]]:
    """Per configuration, seed -> status of each seed that has runs which did not finish (FAILED, KILLED,
    still RUNNING) and none in ``groups``, the finished runs: a seed that diverged and then finished in a
    rerun trained to its end. The latest run of a seed gives its status."""
    finished = {config: {seed_of(r) for r in members} for config, members in groups.items()}
    left: dict[Configuration, dict[str, str]] = defaultdict(dict)
    for config, members in group_runs(unfinished).items():
        for run in sorted(members, key=lambda r: r.info.start_time or 0):
            if seed_of(run) not in finished.get(config, set()):
                left[config][seed_of(run)] = run.info.status
    return dict(left)


def repeated_seeds(groups: Mapping[Configuration, Sequence[Any]]) -> int:
    """How many runs repeat a seed their configuration already ran (``by_seed`` counts each seed once)."""
    return sum(len(members) - len({seed_of(r) for r in members}) for members in groups.values())


def has_setting(params: Mapping[str, str], key: str, wanted: Any) -> bool:
    """Whether a run's params give ``key`` the value ``wanted``; a config group's choice matches by the class it
    builds, as labels name it (``optimizer=SGD``) or as the override chose it (``optimizer=sgd``)."""
    if _same(params.get(key), wanted):
        return True
    target = params.get(f"{key}._target_")
    return target is not None and builds(wanted, target)


def builds(option: Any, target: str) -> bool:
    """Whether a config group's option, by its name, is the one that builds the class ``target``: explab names
    its options after their classes (``adamw`` builds ``torch.optim.AdamW``, ``lazy_adam``
    ``explab.models.LazyAdam``), and labels name them by the class (``optimizer=AdamW``)."""
    return str(option).replace("_", "").lower() == target.rpartition(".")[2].lower()


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
