"""Finding data files, and the message a researcher needs when they are not there."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from explab.data.errors import DataError


def readable(path: Path) -> Path:
    """``path``, once this account may read it; else the ``PermissionError`` opening it would raise, now,
    before anything is read (``readable_by_this_account`` turns it into a ``DataError``)."""
    if not os.access(path, os.R_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    return path


def find_file(data_dir: str | Path, name: str, how_to_get: str) -> Path:
    """``name`` or ``name.gz`` inside ``data_dir``; a DataError that says where it goes and how to get it."""
    folder = Path(data_dir).expanduser()
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return readable(candidate)
    raise DataError(
        f"{name}[.gz] not found in {folder.resolve()}.\n{how_to_get}\n"
        f"Then point the experiment at that folder: data.data_dir=/path/to/folder"
    )


def download(url_bases: list[str], name: str, folder: Path) -> Path:
    """Fetch ``name`` from the first mirror that answers; a DataError naming every mirror otherwise."""
    import urllib.request

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    errors = []
    for base in url_bases:
        try:
            partial = target.with_suffix(target.suffix + ".part")
            with urllib.request.urlopen(f"{base}{name}", timeout=30) as answer, open(partial, "wb") as out:
                out.write(answer.read())
            partial.replace(target)
            return target
        except OSError as err:
            errors.append(f"{base}{name}: {err}")
    raise DataError("could not download " + name + ":\n  " + "\n  ".join(errors))
