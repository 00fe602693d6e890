"""Search spaces become Optuna distributions, or a message naming the parameter."""

from __future__ import annotations

import pytest

from explab.sweep.space import SearchSpaceError, parse_search_space


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=tag(log, interval(0, 0.1))", r"'optimizer.lr': .* `low > 0` must hold for `log=True`"),
        ("optimizer.lr=interval(0.1, 0.01)", r"'optimizer.lr': .* `low <= high` must hold"),
        ("model.backbone.depth=range(2, 2)", r"'model.backbone.depth': .*\(range\(a, b\) stops before b\)$"),
    ],
)
def test_a_space_optuna_cannot_draw_from_names_its_parameter(override: str, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        parse_search_space(None, [override])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "float", "low": 0}, r"^'x': a float parameter needs high: give \{type: float, low: \.\.\., high: "),
        ({"type": "categorical"}, r"^'x': a categorical parameter needs choices: give \{type: categorical, choices"),
        ({"type": "int", "low": 0, "high": "many"}, r"^'x': invalid literal for int\(\) with base 10: 'many'$"),
        ({"type": "floats", "low": 0, "high": 1}, r"^'x': type must be float, int or categorical, got 'floats'$"),
    ],
)
def test_a_parameter_spec_that_cannot_be_read_says_what_it_needs(spec: dict, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        parse_search_space({"x": spec}, [])
