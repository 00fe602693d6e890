"""Search spaces: Hydra's sweep syntax (``interval``, ``range``, ``choice``, ``tag(log, ...)``) or YAML specs
(``{type: float, low: 1e-4, high: 1e-1, log: true}``), turned into Optuna distributions."""

from __future__ import annotations

from collections.abc import Mapping
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
    except (KeyError, ValueError, TypeError) as err:
        raise SearchSpaceError(f"'{key}': {err}") from err
    raise SearchSpaceError(f"'{key}': type must be float, int or categorical, got {kind!r}")


def parse_search_space(
    yaml_params: Mapping[str, Any] | None, arguments: list[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Distributions from the YAML ``params`` then the command line (which wins), and the fixed overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    space: dict[str, BaseDistribution] = {}
    for key, spec in (yaml_params or {}).items():
        if isinstance(spec, Mapping):
            space[str(key)] = _from_spec(str(key), spec)
        else:
            override = parser.parse_override(f"{key}={spec}")
            if not override.is_sweep_override():
                raise SearchSpaceError(
                    f"'{key}: {spec}' is a fixed value, not a search space; put fixed values in the experiment config"
                )
            space[str(key)] = _from_override(override)
    fixed: list[str] = []
    for override in parser.parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = _from_override(override)
        else:
            space.pop(key, None)
            fixed.append(str(override.input_line))
    return space, fixed


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
