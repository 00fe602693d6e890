"""Conditional search spaces (``when:``): sampled define-by-run, recorded per trial, refused when they cannot hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

from explab.sweep.space import SearchSpaceError, parse_conditions, parse_search_space, settle_pinned_conditions
from tests.conftest import runs_in
from tests.sweep.test_sweeper import explab_sweep, load, sweep_plain_app


def space_of(params: dict) -> tuple[dict, dict]:
    space, _ = parse_search_space(params, [])
    return space, parse_conditions(params, space)


def test_a_condition_holds_only_for_its_listed_values() -> None:
    space, conditions = space_of(
        {
            "depth": "range(1, 4)",
            "dropout": {"sweep": "interval(0.0, 0.5)", "when": {"depth": [2, 3]}},
            "optimizer": "choice(adam, sgd)",
            "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"optimizer": "sgd"}},
        }
    )
    assert isinstance(space["depth"], IntDistribution) and isinstance(space["optimizer"], CategoricalDistribution)
    assert conditions["dropout"].holds({"depth": 2}) and not conditions["dropout"].holds({"depth": 1})
    assert conditions["momentum"].holds({"optimizer": "sgd"}) and not conditions["momentum"].holds({})


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({"optimiser": "sgd"}, "names 'optimiser', which is not a searched parameter"),
        ({"optimizer": "sdg"}, "asks for optimizer = sdg, which optimizer never takes"),
        ({"depth": 4}, "asks for depth = 4"),  # range(1, 4) stops before 4
        ({"momentum": 0.5}, "names the parameter itself"),
        ("sgd", r"when must map parameters to values, e.g. when: \{optimizer: sgd\}"),
    ],
)
def test_a_condition_that_cannot_hold_is_refused(when: dict | str, message: str) -> None:
    params = {
        "depth": "range(1, 4)",
        "optimizer": "choice(adam, sgd)",
        "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": when},
    }
    with pytest.raises(SearchSpaceError, match=message):
        space_of(params)


CONDITIONAL = {
    "optimizer": "choice(adam, sgd)",
    "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"optimizer": "sgd"}},
    "nesterov": {"sweep": "choice(true, false)", "when": {"momentum": [0.5]}},
    "depth": "range(1, 4)",
    "dropout": {"sweep": "interval(0.0, 0.5)", "when": {"depth": [2, 3]}},
}


@pytest.mark.parametrize(
    ("pinned", "searched", "unconditional"),
    [
        (["optimizer=sgd"], {"momentum", "nesterov", "depth", "dropout"}, {"momentum"}),
        # a parameter never drawn, and one whose condition names it, are not searched
        (["optimizer=adam"], {"depth", "dropout"}, set()),
        (["depth=2"], {"optimizer", "momentum", "nesterov", "dropout"}, {"dropout"}),
        (["depth=1"], {"optimizer", "momentum", "nesterov"}, set()),
        # a conditional parameter fixed too is not searched, whatever its condition
        (["optimizer=adam", "momentum=0.5"], {"nesterov", "depth", "dropout"}, {"nesterov"}),
    ],
)
def test_a_condition_on_a_parameter_the_sweep_fixes_is_settled_once(
    pinned: list[str], searched: set[str], unconditional: set[str]
) -> None:
    """``-m hparams_search=digits_conditional optimizer=sgd`` was refused: "its condition names 'optimizer',
    which is not a searched parameter"."""
    space, fixed = parse_search_space(CONDITIONAL, pinned)
    params, space, said = settle_pinned_conditions(CONDITIONAL, space, fixed)
    conditions = parse_conditions(params, space)
    assert set(space) == searched
    assert {key for key in ("momentum", "nesterov", "dropout") if key in searched} - set(conditions) == unconditional
    dropped = set(CONDITIONAL) - searched - {fixed.split("=")[0] for fixed in pinned}
    assert sorted(said) == sorted(
        [next(s for s in said if s.startswith(f"{key} is searched in every trial")) for key in unconditional]
        + [next(s for s in said if s.startswith(f"{key} is not searched")) for key in dropped]
    )


def test_conditions_that_wait_on_each_other_are_refused() -> None:
    params = {
        "a": {"type": "int", "low": 0, "high": 1, "when": {"b": 1}},
        "b": {"type": "int", "low": 0, "high": 1, "when": {"a": 1}},
    }
    with pytest.raises(SearchSpaceError, match="depends on itself"):
        space_of(params)


@pytest.mark.slow
def test_a_conditional_parameter_is_sampled_only_where_its_condition_holds(tmp_path: Path) -> None:
    done = sweep_plain_app(
        tmp_path,
        "hydra.sweeper.n_trials=10",
        "hydra.sweeper.sampler.seed=0",
        "hydra.sweeper.skip_repeats=false",
        "hydra.sweeper.params={y: 'choice(0, 1)', x: {type: float, low: -4.0, high: 4.0, when: {y: 1}}}",
        sweep_x=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trials = load(tmp_path, "plain").trials
    assert {t.params["y"] for t in trials} == {0, 1}
    for trial in trials:
        assert ("x" in trial.params) == (trial.params["y"] == 1)
        # the app returns (x - 2)^2 + y; without a sampled x it keeps its config value, 0
        x = trial.params.get("x", 0.0)
        assert trial.value == pytest.approx((x - 2.0) ** 2 + trial.params["y"])


@pytest.mark.slow
def test_momentum_and_dropout_are_searched_only_where_their_conditions_hold(tmp_path: Path) -> None:
    done = explab_sweep(
        tmp_path,
        "hparams_search=digits_conditional",
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.sampler.n_startup_trials=3",
        "trainer.max_epochs=1",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = runs_in(tmp_path / "mlruns", "digits_cnn")
    children = [r for r in runs if r.data.tags.get("explab.sweep") != "parent"]
    assert len(children) == 6
    study = load(tmp_path, "digits_cnn_conditional", "mlruns/optuna/digits_cnn.journal")
    for trial in study.trials:
        [run] = [r for r in children if r.data.tags["optuna.trial_number"] == str(trial.number)]
        sgd = trial.params["optimizer"] == "sgd"
        assert ("optimizer.momentum" in trial.params) == sgd
        assert ("model.backbone.dropout" in trial.params) == (trial.params["model.backbone.depth"] > 1)
        # the child run records what the trial drew, and the config's value where it drew nothing
        assert float(run.data.params["optimizer.lr"]) == pytest.approx(trial.params["optimizer.lr"])
        if sgd:
            assert float(run.data.params["optimizer.momentum"]) == pytest.approx(trial.params["optimizer.momentum"])
        else:
            assert "optimizer.momentum" not in run.data.params  # adam has no momentum
        dropout = trial.params.get("model.backbone.dropout", 0.2)  # 0.2: conf/model/digits_cnn.yaml
        assert float(run.data.params["model.backbone.dropout"]) == pytest.approx(dropout)


@pytest.mark.slow
def test_a_sweep_that_fixes_the_optimizer_searches_its_momentum_in_every_trial(tmp_path: Path) -> None:
    done = explab_sweep(
        tmp_path,
        "hparams_search=digits_conditional",
        "optimizer=sgd",
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=1",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    assert "optimizer is not searched: the command line fixes it (optimizer=sgd)" in said
    assert "optimizer.momentum is searched in every trial: its condition on optimizer holds for optimizer=sgd" in said
    study = load(tmp_path, "digits_cnn_conditional", "mlruns/optuna/digits_cnn.journal")
    assert all("optimizer.momentum" in t.params and "optimizer" not in t.params for t in study.trials)


def test_a_queued_point_that_rules_out_its_own_conditional_value_is_refused(tmp_path: Path) -> None:
    done = sweep_plain_app(
        tmp_path,
        "hydra.sweeper.params={y: 'choice(0, 1)', x: {type: float, low: -4.0, high: 4.0, when: {y: 1}}}",
        "hydra.sweeper.enqueue=[{y: 1, x: 2.0}, {y: 0, x: 3.0}]",
        sweep_x=False,
    )
    assert done.returncode != 0
    assert (
        "hydra.sweeper.enqueue: {'y': 0, 'x': 3.0} sets x (searched only when y in [1]), which its own values rule "
        "out, so the trial would run without it: leave it out of this point"
    ) in done.stderr
    assert "Traceback" not in done.stderr
    assert not load(tmp_path, "plain").trials, "refused before any trial ran"
