"""The README's map of the code ("Where things live" and how one command becomes a run) names files and
folders that exist, so a newcomer following it never looks for a module that moved."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH_LIKE = re.compile(r"^[\w./-]+(\.(py|ipynb|yaml|sh|md)|/)$")


def _layout_text() -> list[tuple[str, str]]:
    """(the row's folder, the text naming what is in it) for each row of the table, then the paragraph after
    it, whose names are relative to the repository or ``src/explab/``."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    rows: list[tuple[str, str]] = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`") and "never committed" not in cells[1]:
            rows.append((cells[0].strip("`"), cells[1]))
    paragraph = section.split("How one command becomes a run", 1)[1]
    return [*rows, ("src/explab/", paragraph)]


def test_every_file_and_folder_the_readmes_map_names_exists() -> None:
    rows = _layout_text()
    assert any(folder == "src/explab/" for folder, _ in rows[:-1]), "the table has a row for src/explab/"
    named = 0
    for folder, text in rows:
        assert (ROOT / folder).is_dir(), f"the README's table has a row for {folder}, which is not a folder"
        for name in re.findall(r"`([^`]+)`", text):
            if not PATH_LIKE.match(name):
                continue  # a command, a key or a tag
            named += 1
            candidates = (ROOT / name, ROOT / folder / name, ROOT / "src/explab" / name)
            assert any(path.exists() for path in candidates), f"the README's map names {name} ({folder}): not there"
    assert named >= 30, f"only {named} paths read from the README's map: the table's format changed"
