"""The config folders a job composed from beside explab's own (``hydra.searchpath``, a lab's ``conf/``):
recorded on its run, and found again when ``reproduce=`` or ``resume=`` composes the run's config.

Hydra keeps the search path with its own overrides, not the job's, so a run's ``config/overrides.yaml`` does
not hold it; without it, the run's ``experiment=wine_resmlp`` no longer composes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from explab.config import override_key
from explab.errors import UsageError
from explab.utils.logging import get_logger

if TYPE_CHECKING:
    from mlflow.entities import Run
    from omegaconf import DictConfig

log = get_logger(__name__)

SEARCH_PATH_TAG = "explab.searchpath"  # as an override's value: [file:///abs/lab/conf]
FILE = "file://"


def given_search_path() -> list[str]:
    """This command's ``hydra.searchpath=...`` override, as given (empty for none or outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.hydra if override_key(o) == "hydra.searchpath"]


def search_path_value() -> str | None:
    """This command's search path as the value of ``explab.searchpath``, each folder absolute (a relative
    ``file://conf`` is the command's working folder's, which a later command need not share); None for none."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or not HydraConfig.get().searchpath:
        return None
    hydra = HydraConfig.get()
    folders = [
        f"{FILE}{(Path(hydra.runtime.cwd) / entry[len(FILE) :]).resolve()}" if entry.startswith(FILE) else entry
        for entry in hydra.searchpath
    ]
    return "[" + ",".join(_quoted(folder) for folder in folders) + "]"


def search_path_tags(cfg: DictConfig) -> dict[str, str]:
    """``explab.searchpath`` for the job's run: this command's search path, or for ``reproduce=`` without one
    its source run's, which it composed with (a reproduction of a reproduction finds the lab's conf/ too)."""
    value = search_path_value()
    if value is None and cfg.get("reproduce"):
        from explab.reproduce import source_run

        value = source_run(cfg).data.tags.get(SEARCH_PATH_TAG)
    return {SEARCH_PATH_TAG: value} if value else {}


def _quoted(text: str) -> str:
    # quoted, a folder's name may hold a comma or a space and still read back as one item of the list
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def search_path_of(run: Run) -> list[str]:
    """The ``hydra.searchpath`` override that composes ``run``'s config again: this command's where it gives one
    (a lab's conf/ moved), else the one the run recorded. A recorded folder that is gone is refused with the
    override to give instead; Hydra would only say that the run's experiment cannot be found."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = given_search_path()
    recorded = run.data.tags.get(SEARCH_PATH_TAG)
    if given or not recorded:
        return given
    override = f"hydra.searchpath={recorded}"
    parsed = OverridesParser.create().parse_override(override).value()
    entries = [str(entry) for entry in parsed] if isinstance(parsed, list) else [str(parsed)]
    gone = [entry[len(FILE) :] for entry in entries if entry.startswith(FILE) and not Path(entry[len(FILE) :]).is_dir()]
    if gone:
        raise UsageError(
            f"run {run.info.run_id} composed its config with {override}, and {gone[0]} is no longer a folder here: "
            "give the folder that holds those configs now, hydra.searchpath=[file://PATH]"
        )
    log.info("composing run %s's config with its recorded %s", run.info.run_id, override)
    return [override]
