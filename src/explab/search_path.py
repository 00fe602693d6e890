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

log = get_logger(__name__)

SEARCH_PATH_TAG = "explab.searchpath"  # as an override's value: [file:///abs/lab/conf]
FILE = "file://"


def given_search_path() -> list[str]:
    """This command's ``hydra.searchpath=...`` override, as given (empty for none or outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.hydra if override_key(o) == "hydra.searchpath"]


def search_path_tags() -> dict[str, str]:
    """``explab.searchpath`` for the job's run: the folders its config was composed from beside explab's, each
    absolute (a relative ``file://conf`` is the command's working folder's, which a later command need not
    share); empty for none. A reproduction's are its source's, unless the command gave its own."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or not HydraConfig.get().searchpath:
        return {}
    hydra = HydraConfig.get()
    folders = [
        f"{FILE}{(Path(hydra.runtime.cwd) / entry[len(FILE) :]).resolve()}" if entry.startswith(FILE) else entry
        for entry in hydra.searchpath
    ]
    return {SEARCH_PATH_TAG: "[" + ",".join(_quoted(folder) for folder in folders) + "]"}


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
