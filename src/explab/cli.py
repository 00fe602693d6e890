"""Shared console-script plumbing: run a Hydra app, and turn a bad override into advice."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable

from explab.config import config_dir


def _override_advice(config_name: str, overrides: list[str]) -> str | None:
    """Compose again to find the bad override; suggest the nearest valid keys. None when it composes."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    sweep_free = [o for o in overrides if not o.startswith(("hydra.", "hydra/", "-")) and not _is_sweep(o)]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            bad = next((i for i in range(len(sweep_free)) if not _composes(config_name, sweep_free[: i + 1])), None)
            if bad is None:
                return None
            good = compose(config_name, overrides=sweep_free[:bad])
    except Exception:
        return None
    finally:
        GlobalHydra.instance().clear()
    override = sweep_free[bad]
    key = override.split("=", 1)[0].lstrip("+~")
    if (config_dir() / key.split("@")[0]).is_dir():
        return None  # a config group: Hydra's own message already lists the available options
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(good, parent) if parent else good
    if not hasattr(node, "keys"):
        return f"'{override}': '{parent}' is not a config group or mapping."
    valid = sorted(str(k) for k in node)
    close = difflib.get_close_matches(leaf, valid, n=3)
    hint = f" Did you mean: {', '.join(f'{parent}.{c}' if parent else c for c in close)}?" if close else ""
    return (
        f"Bad override '{override}'.{hint}\nValid keys under '{parent or '<root>'}': {', '.join(valid)}\n"
        f"To add a new key on purpose, write +{key}=..."
    )


def _is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except Exception:
        return False


def _composes(config_name: str, overrides: list[str]) -> bool:
    from hydra import compose

    try:
        compose(config_name, overrides=overrides)
    except Exception:
        return False
    return True


def run_hydra_app(app: Callable[[], object], config_name: str) -> None:
    """Run a ``@hydra.main`` app; on a composition error, print which key is wrong and what is valid."""
    try:
        app()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            advice = _override_advice(config_name, [a for a in sys.argv[1:] if "=" in a])
            if advice:
                print(advice, file=sys.stderr)
        raise
