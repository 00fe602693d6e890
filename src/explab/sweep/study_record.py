"""What a study was started with, kept on the study, so a resumed sweep cannot quietly search something else.

Running the same command again resumes a study; run with another search space, direction, metric or fixed
override, it would mix trials of two searches in one ranking. The first worker records the definition as a
study attribute; every later one compares its own and refuses the differences, unless told to accept them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from explab.config import override_key
from explab.errors import UsageError
from explab.tracking.params import describes_training

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

RECORD_ATTR = "explab.sweep_definition"

# fixed overrides that change where or how fast trials run, never what they compute
RESOURCE_OVERRIDES = ("torch_threads=", "trainer.devices=", "data.num_workers=")


def computing_overrides(fixed: Iterable[str]) -> list[str]:
    """``fixed``, sorted, without the overrides that change only where or how fast trials run
    (``RESOURCE_OVERRIDES``) or where they write (``paths.*``: a project moved, or a cluster's scratch space
    given on the command line)."""
    return sorted(
        o for o in fixed if not o.lstrip("+~").startswith(RESOURCE_OVERRIDES) and describes_training(override_key(o))
    )


def sweep_definition(
    space: Mapping[str, BaseDistribution],
    direction: str | list[str],
    metric: str | list[str] | None,
    fixed: list[str],
    custom_search_space: str | None = None,
    conditions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The parts of a sweep that decide what its trials compute and how they are ranked, as plain values;
    a conditional parameter's entry ends with its condition."""
    conditions = conditions or {}
    definition = {
        "space": {
            name: repr(distribution) + (f" when {conditions[name]}" if name in conditions else "")
            for name, distribution in sorted(space.items())
        },
        "direction": direction,
        "metric": metric,
        "fixed": computing_overrides(fixed),
    }
    if custom_search_space:  # recorded only when set, so studies recorded before it existed still compare
        definition["custom_search_space"] = custom_search_space
    return definition


def differences(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Each way ``now`` differs from ``recorded``, as a sentence; empty when they agree."""
    found = []
    for name in sorted({*recorded["space"], *now["space"]}):
        then_value = recorded["space"].get(name) or "(not searched)"
        now_value = now["space"].get(name) or "(not searched)"
        if then_value != now_value:
            found.append(f"search space {name}: {then_value} then, {now_value} now")
    for key in ("direction", "metric", "custom_search_space"):
        if recorded.get(key) != now.get(key):
            found.append(f"{key}: {recorded.get(key)} then, {now.get(key)} now")
    # a definition recorded before an override counted as a place kept it: compared as it would be recorded now
    then_fixed, now_fixed = set(computing_overrides(recorded["fixed"])), set(now["fixed"])
    found += [f"fixed override {o} dropped" for o in sorted(then_fixed - now_fixed)]
    found += [f"fixed override {o} added" for o in sorted(now_fixed - then_fixed)]
    return found


def check_definition(study: optuna.Study, definition: dict[str, Any], allow_changes: bool) -> list[str]:
    """Record ``definition`` on a new study; on a resumed one, raise ``UsageError`` listing what changed.

    A study that holds no trial yet takes ``definition`` as if new: an earlier command stopped before its first
    trial (a warm-start source misnamed, say), and nothing in the study would fail to compare.

    Returns:
        The accepted changes (``allow_changes``), which then become the study's definition; empty otherwise.
    """
    recorded = study.user_attrs.get(RECORD_ATTR)
    if recorded is None or not study.get_trials(deepcopy=False):
        study.set_user_attr(RECORD_ATTR, definition)
        return []
    changes = differences(recorded, definition)
    if changes and not allow_changes:
        raise UsageError(
            f"study '{study.study_name}' was started with another sweep definition, so its trials would not "
            f"compare: {'; '.join(changes)}. Run it as it was, give it a new hydra.sweeper.study_name, or "
            "accept the changes with hydra.sweeper.allow_changes=true"
        )
    if changes:
        study.set_user_attr(RECORD_ATTR, definition)
    return changes
