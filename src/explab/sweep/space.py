"""Search spaces: Hydra's sweep syntax (``interval``, ``range``, ``choice``, ``tag(log, ...)``) or YAML specs
(``{type: float, low: 1e-4, high: 1e-1, log: true}``), turned into Optuna distributions.

A YAML spec (or ``{sweep: "interval(0.0, 0.5)", when: ...}``) may hold a condition, ``when: {optimizer: sgd}``
or ``when: {model.backbone.depth: [2, 3]}``: the
parameter is sampled only in trials where each named parameter took one of those values, and otherwise keeps
its value from the config. Trials are sampled define-by-run, so the sampler sees which parameters a trial has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from explab.errors import ExplabError

if TYPE_CHECKING:
    from optuna.trial import Trial


class SearchSpaceError(ExplabError, ValueError):
    """A search-space entry that cannot become an Optuna distribution."""


def _from_override(override: Any) -> BaseDistribution:
    """The distribution of a sweep override; one Optuna refuses (a log scale from 0, bounds the wrong way
    round, an empty range) is a ``SearchSpaceError`` naming the parameter."""
    try:
        return _distribution_of(override)
    except ValueError as err:
        empty = " (range(a, b) stops before b)" if override.is_range_sweep() else ""
        raise SearchSpaceError(
            f"'{override.get_key_element()}': {override.input_line} is not a search space Optuna can draw from: "
            f"{str(err).rstrip('.')}{empty}"
        ) from None


def _distribution_of(override: Any) -> BaseDistribution:
    from hydra.core.override_parser.types import Transformer

    key = override.get_key_element()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        return CategoricalDistribution(choices)
    if override.is_range_sweep():
        step = value.step
        if any(isinstance(v, float) for v in (value.start, value.stop, step)):
            count = round((value.stop - value.start) / step)
            return FloatDistribution(value.start, value.start + (count - 1) * step, step=step)
        # Hydra's range() excludes its stop, like Python's; Optuna's high is inclusive
        return IntDistribution(int(value.start), int(value.stop) - int(step), step=int(step))
    if override.is_interval_sweep():
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise SearchSpaceError(f"'{key}': sweep {override.input_line} is not supported")


# what each type of a {type: ...} parameter must give (hydra-optuna-sweeper's forms)
SPEC_FORMS = {
    "categorical": "{type: categorical, choices: [...]}",
    "int": "{type: int, low: ..., high: ...} (step and log optional)",
    "float": "{type: float, low: ..., high: ...} (step and log optional)",
}


def _from_spec(key: str, spec: Mapping[str, Any]) -> BaseDistribution:
    kind = spec.get("type")
    try:
        if kind == "categorical":
            return CategoricalDistribution(list(spec["choices"]))
        if kind == "int":
            return IntDistribution(
                int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)), step=int(spec.get("step") or 1)
            )
        if kind == "float":
            return FloatDistribution(
                float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)), step=spec.get("step")
            )
    except KeyError as err:
        raise SearchSpaceError(
            f"'{key}': a {kind} parameter needs {err.args[0]}: give {SPEC_FORMS[str(kind)]}"
        ) from None
    except (ValueError, TypeError) as err:
        raise SearchSpaceError(f"'{key}': {err}") from err
    raise SearchSpaceError(f"'{key}': type must be float, int or categorical, got {kind!r}")


@dataclass(frozen=True)
class Condition:
    """Sample a parameter only when each parameter in ``requires`` took one of its listed values."""

    requires: Mapping[str, tuple[Any, ...]]

    def holds(self, params: Mapping[str, Any]) -> bool:
        return all(name in params and params[name] in values for name, values in self.requires.items())

    def __str__(self) -> str:
        return " and ".join(f"{name} in {list(values)}" for name, values in sorted(self.requires.items()))


def possible(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``distribution`` can draw ``value``."""
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(distribution, IntDistribution):
        return (
            value == int(value)
            and distribution.low <= value <= distribution.high
            and ((int(value) - distribution.low) % distribution.step == 0)
        )
    if isinstance(distribution, FloatDistribution):
        return distribution.low <= value <= distribution.high
    return False


def parse_conditions(
    yaml_params: Mapping[str, Any] | None, space: Mapping[str, BaseDistribution]
) -> dict[str, Condition]:
    """The ``when:`` of each YAML spec, checked against ``space``.

    Raises:
        SearchSpaceError: a condition names a parameter that is not searched, or a value it cannot take.
    """
    conditions: dict[str, Condition] = {}
    for key, spec in (yaml_params or {}).items():
        # a key the command line fixes (optimizer.momentum=0.9) is not searched, under any condition
        if not isinstance(spec, Mapping) or spec.get("when") is None or key not in space:
            continue
        when = spec["when"]
        if not isinstance(when, Mapping) or not when:
            raise SearchSpaceError(f"'{key}': when must map parameters to values, e.g. when: {{optimizer: sgd}}")
        requires: dict[str, tuple[Any, ...]] = {}
        for name, values in when.items():
            name = str(name)
            listed = tuple(values) if isinstance(values, (list, tuple)) else (values,)
            if name == key:
                raise SearchSpaceError(f"'{key}': its condition names the parameter itself")
            if name not in space:
                raise SearchSpaceError(
                    f"'{key}': its condition names '{name}', which is not a searched parameter; searched: "
                    f"{', '.join(sorted(set(space) - {key}))}"
                )
            impossible = [v for v in listed if not possible(space[name], v)]
            if impossible:
                raise SearchSpaceError(
                    f"'{key}': its condition asks for {name} = {', '.join(map(str, impossible))}, which "
                    f"{name} never takes ({space[name]!r})"
                )
            requires[name] = listed
        conditions[str(key)] = Condition(requires)
    sampling_order(space, conditions)  # refuses a cycle before any trial
    return conditions


def settle_pinned_conditions(
    yaml_params: Mapping[str, Any] | None, space: Mapping[str, BaseDistribution], fixed: Sequence[str]
) -> tuple[dict[str, Any], dict[str, BaseDistribution], list[str]]:
    """The YAML ``params`` and ``space`` with each condition on a parameter that a fixed override pins
    (``optimizer=sgd`` on the command line, over a search of ``choice(adam, sgd)``) settled once: a requirement
    the pinned value meets is dropped, and a parameter whose condition it rules out is not searched, nor one
    whose condition names such a parameter (as in a trial, where it is never drawn). Returns the params, the
    space and a sentence for each parameter settled. Other conditions are left for ``parse_conditions``.
    """
    pinned = pinned_values(fixed)
    params, space = dict(yaml_params or {}), dict(space)
    settled: list[str] = []
    dropped: set[str] = set()
    changed = True
    while changed:
        changed = False
        for key, spec in list(params.items()):
            when = spec.get("when") if isinstance(spec, Mapping) else None
            if key not in space or not isinstance(when, Mapping):
                continue
            kept = dict(when)
            for name, values in when.items():
                listed = tuple(values) if isinstance(values, (list, tuple)) else (values,)
                if name in space or (name not in pinned and name not in dropped):
                    continue
                if name in pinned and str(pinned[name]) in map(str, listed):
                    del kept[name]
                    settled.append(f"{key} is searched in every trial: its condition on {name} holds for {name}="
                                   f"{pinned[name]}, which the sweep fixes")  # fmt: skip
                    continue
                why = f"{name}={pinned[name]}, which the sweep fixes" if name in pinned else f"{name}, not searched"
                settled.append(f"{key} is not searched: its condition asks for {name} in {list(listed)}, not {why}")
                del space[key], params[key]
                dropped.add(key)
                changed = True
                break
            else:
                params[key] = {**spec, "when": kept or None}
    return params, space, settled


def pinned_values(fixed: Sequence[str]) -> dict[str, Any]:
    """The value each fixed override gives its key (``optimizer=sgd``: optimizer, "sgd")."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(list(fixed))}


def sampling_order(space: Mapping[str, BaseDistribution], conditions: Mapping[str, Condition]) -> list[str]:
    """The parameters in the order they are sampled: each after those its condition names."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise SearchSpaceError(f"'{name}': its condition depends on itself through {', '.join(sorted(visiting))}")
        visiting.add(name)
        for parent in conditions[name].requires if name in conditions else ():
            visit(parent)
        visiting.discard(name)
        order.append(name)

    for name in space:
        visit(name)
    return order


def parse_search_space(
    yaml_params: Mapping[str, Any] | None, arguments: list[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Distributions from the YAML ``params`` then the command line (which wins), and the fixed overrides:
    the command line's plain values and, as in Hydra's own Optuna sweeper, plain values under ``params``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for key, spec in (yaml_params or {}).items():
        if isinstance(spec, Mapping) and "sweep" not in spec:
            space[str(key)] = _from_spec(str(key), spec)
            continue
        # {sweep: "interval(0, 0.5)", when: ...}: the sweep syntax with a condition
        override = parser.parse_override(f"{key}={spec['sweep'] if isinstance(spec, Mapping) else spec}")
        if override.is_sweep_override():
            space[str(key)] = _from_override(override)
        else:
            fixed[str(key)] = str(override.input_line)
    for override in parser.parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = _from_override(override)
            fixed.pop(key, None)
        else:
            space.pop(key, None)
            fixed[key] = str(override.input_line)
    return space, list(fixed.values())


def grid_of(space: Mapping[str, BaseDistribution]) -> dict[str, list[Any]]:
    """Every value of a discrete space, for ``GridSampler``."""
    grid: dict[str, list[Any]] = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[key] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step:
            count = round((dist.high - dist.low) / dist.step) + 1
            grid[key] = [dist.low + i * dist.step for i in range(count)]
        else:
            raise SearchSpaceError(f"'{key}': a grid needs discrete values (choice, range, or a step)")
    return grid


def suggest(trial: Trial, name: str, distribution: BaseDistribution) -> Any:
    """Sample ``name`` from ``distribution`` through the trial's public suggest API."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, list(distribution.choices))
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    raise SearchSpaceError(f"'{name}': {type(distribution).__name__} is not a distribution explab samples")


def as_override(key: str, value: Any) -> str:
    """A Hydra override that sets ``key`` to exactly ``value``."""
    if isinstance(value, str):
        return f"{key}={value}"
    if isinstance(value, bool) or value is None:
        return f"{key}={str(value).lower() if value is not None else 'null'}"
    return f"{key}={value!r}"
