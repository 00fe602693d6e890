"""The code a config builds from, named by its ``_target_`` keys: where they are, and that each can be imported.

Hydra imports a target only when it instantiates it, once a run exists, and then answers "Error locating
target" with neither the reason nor the fix.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import types
from collections.abc import Iterator
from typing import Any

from explab.errors import UsageError, first_line


def config_targets(cfg: Any) -> Iterator[tuple[str, str]]:
    """``(key, target)`` for each ``_target_`` of ``cfg`` (``model.backbone._target_``, ``wine_lab.backbone.X``),
    in the config's order, read without resolving: ``${hydra:...}`` has no value outside a job, and a target is
    never an interpolation."""
    from omegaconf import OmegaConf

    yield from _targets_under("", OmegaConf.to_container(cfg, resolve=False))


def target_packages(cfg: Any) -> set[str]:
    """The top-level package of each ``_target_`` of ``cfg`` (``wine_lab``, ``torch``, ``explab``)."""
    return {target.split(".")[0] for _, target in config_targets(cfg)}


def _targets_under(path: str, node: Any) -> Iterator[tuple[str, str]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for name, value in items:
        key = f"{path}.{name}" if path else str(name)
        if name == "_target_" and isinstance(value, str) and not value.startswith("${"):
            yield key, value
        else:
            yield from _targets_under(key, value)


def check_targets(cfg: Any, under: tuple[str, ...] | None = None) -> None:
    """Raise ``UsageError`` naming the first ``_target_`` of ``cfg`` (of its top-level keys ``under``, when given)
    that cannot be imported, why, and the fix: before a run exists, rather than when Hydra instantiates it.
    Hydra's own node (a sweeper's config holds it) is Hydra's to check."""
    for key, target in config_targets(cfg):
        if key.startswith("hydra.") or (under is not None and key.split(".")[0] not in under):
            continue
        why = why_unimportable(target)
        if why is not None:
            raise UsageError(f"{key}={target} cannot be imported: {why}")


def why_unimportable(target: str) -> str | None:
    """Why the dotted ``target`` (a module, then attributes or submodules) cannot be imported; None when it can.
    Imports what it finds, as instantiating it would."""
    parts = target.split(".")
    top = parts[0]
    try:
        found: Any = importlib.import_module(top)
    except ModuleNotFoundError as error:
        if error.name != top:  # the package is there; one of its own imports is not
            return _failed(top, error)
        return (
            f"there is no module named '{top}'. Install the package that holds it (pip install -e its folder), "
            f"or put the folder that holds {top}/ on PYTHONPATH"
        )
    except Exception as error:
        return _failed(top, error)
    for depth, name in enumerate(parts[1:], start=1):
        if hasattr(found, name):
            found = getattr(found, name)
            continue
        dotted = ".".join(parts[: depth + 1])
        if not isinstance(found, types.ModuleType):  # a class's attribute: there is no submodule to import
            return _has_no(parts[:depth], name, found)
        try:
            found = importlib.import_module(dotted)
        except ModuleNotFoundError as error:
            if error.name != dotted:
                return _failed(dotted, error)
            return _has_no(parts[:depth], name, found)
        except Exception as error:
            return _failed(dotted, error)
    return None


def _has_no(where: list[str], name: str, found: Any) -> str:
    names = {n for n in dir(found) if not n.startswith("_")}
    if hasattr(found, "__path__"):  # a package: its submodules not imported yet are names too
        names |= {module.name for module in pkgutil.iter_modules(found.__path__)}
    close = difflib.get_close_matches(name, sorted(names), n=3)
    return f"{'.'.join(where)} has no '{name}'" + (f". Did you mean: {', '.join(close)}?" if close else "")


def _failed(module: str, error: BaseException) -> str:
    # the module's own code failed (a syntax error, a library it imports that is missing): its message says where
    return f"importing {module} raised {type(error).__name__}: {first_line(error)}"
