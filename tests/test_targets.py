"""Each ``_target_`` of a config is imported before a run exists, and one that cannot be says why and what to do."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from explab.build import NETWORK_KEYS
from explab.errors import UsageError
from explab.targets import check_targets, config_targets, why_unimportable
from explab.validation import validate_config


@pytest.fixture
def lab_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package of a lab's own, ``tinylab``, importable for the test alone: a module that imports, and one
    whose import fails as a lab's code can."""
    package = tmp_path / "tinylab"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "backbone.py").write_text("class ResidualMLP:\n    depth = 2\n")
    (package / "broken.py").write_text("import a_library_the_lab_forgot_to_install\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [m for m in sys.modules if m == "tinylab" or m.startswith("tinylab.")]:
        del sys.modules[name]


def test_an_importable_target_and_its_attributes_pass(lab_package: Path) -> None:
    assert why_unimportable("tinylab.backbone.ResidualMLP") is None
    assert why_unimportable("tinylab.backbone.ResidualMLP.depth") is None
    assert why_unimportable("torch.optim.AdamW") is None


def test_a_package_not_on_the_path_is_named_with_how_to_put_it_there() -> None:
    why = why_unimportable("not_installed_lab.backbone.ResidualMLP")
    assert why == (
        "there is no module named 'not_installed_lab'. Install the package that holds it (pip install -e its "
        "folder), or put the folder that holds not_installed_lab/ on PYTHONPATH"
    )


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("tinylab.backbone.ResidualMLp", "tinylab.backbone has no 'ResidualMLp'. Did you mean: ResidualMLP?"),
        ("tinylab.backbon.ResidualMLP", "tinylab has no 'backbon'. Did you mean: backbone?"),
        ("tinylab.backbone.ResidualMLP.dept", "tinylab.backbone.ResidualMLP has no 'dept'. Did you mean: depth?"),
        ("torch.optim.AdamWW", "torch.optim has no 'AdamWW'. Did you mean: AdamW, Adam"),
    ],
)
def test_a_misspelt_name_is_answered_with_the_nearest_ones(lab_package: Path, target: str, why: str) -> None:
    assert why_unimportable(target).startswith(why)


def test_a_module_whose_own_import_fails_is_told_apart_from_a_missing_one(lab_package: Path) -> None:
    why = why_unimportable("tinylab.broken.Model")
    assert why == (
        "importing tinylab.broken raised ModuleNotFoundError: No module named 'a_library_the_lab_forgot_to_install'"
    )


def test_the_config_is_refused_before_a_run_naming_the_key(compose_cfg) -> None:
    cfg = compose_cfg("experiment=digits_cnn", "model.backbone._target_=not_installed_lab.backbone.ResidualMLP")
    with pytest.raises(UsageError, match=r"^model\.backbone\._target_=not_installed_lab\.backbone\.ResidualMLP "):
        validate_config(cfg)


def test_every_target_of_a_composed_config_is_found_with_its_key(compose_cfg) -> None:
    targets = dict(config_targets(compose_cfg("experiment=digits_cnn")))
    assert targets["optimizer._target_"] == "torch.optim.Adam"
    assert targets["model.backbone._target_"].startswith("explab.models.")
    assert all(why_unimportable(target) is None for target in targets.values()), "every shipped target imports"


def test_the_targets_under_some_keys_alone_are_checked(compose_cfg) -> None:
    """A logged model is rebuilt from ``model``, ``optimizer`` and ``scheduler``; the data module it was trained
    with need not import where it predicts."""
    cfg = compose_cfg("experiment=digits_cnn", "data._target_=not_installed_lab.data.Wine")
    check_targets(cfg, under=NETWORK_KEYS)
    with pytest.raises(UsageError, match=r"^data\._target_=not_installed_lab\.data\.Wine cannot be imported"):
        check_targets(cfg)
