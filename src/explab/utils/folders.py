"""Whether a folder can be written (or created) by this process, and why not; how much room it has left."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def unwritable(folder: Path) -> tuple[Path, str] | None:
    """None when ``folder`` can be written, or created under its nearest existing parent; else that folder (or
    parent) and why: "on a read-only file system" or "not writable by this account"."""
    nearest = nearest_existing(folder)
    if os.access(nearest, os.W_OK | os.X_OK):
        return None
    if os.statvfs(nearest).f_flag & os.ST_RDONLY:
        return nearest, "on a read-only file system"
    return nearest, "not writable by this account"


def free_bytes(folder: Path) -> int:
    """The bytes this account may still write on the file system of ``folder``, or of its nearest existing
    parent (what ``df`` shows as available: a disk's reserve for root is left out, a quota is not)."""
    return shutil.disk_usage(nearest_existing(folder)).free


def nearest_existing(folder: Path) -> Path:
    """``folder`` itself, or the closest of its parents that exists: what a folder not made yet will be made
    under, so what decides whether and where it can be."""
    return next(p for p in (folder, *folder.parents) if p.exists())
