"""Checkpoint files written atomically on any local filesystem, and read with errors that name the file.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction, which stages the file in
``$TMPDIR`` and moves it into place; across filesystems (a tmpfs ``/tmp``, node-local ``/tmp`` beside
NFS or Lustre run folders) the move becomes a copy onto the real name, so a kill or a full disk during it
leaves a truncated checkpoint under that name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from explab.checkpoints import CheckpointError, unreadable_checkpoint_error
from explab.errors import no_room_behind


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the checkpoint's own folder, fsync, then ``os.replace``.

    The real name always holds either the previous complete checkpoint or the new one. Remote paths
    (``s3://`` ...) keep Lightning's own writer. Loading goes through Lightning as before, but a file that
    cannot be read is reported by name as truncated or corrupt, on every path that loads a checkpoint
    (``resume=``, ``ckpt_path=``, testing the best checkpoint).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with open(staging, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, path)
        except BaseException as error:
            staging.unlink(missing_ok=True)
            reason = no_room_behind(error)
            if reason is not None:
                raise CheckpointError(
                    f"checkpoint {path} could not be written: {reason} in {path.parent} (the checkpoints "
                    "written before are whole). Free space there, or give the runs' folders another file system: "
                    "paths.log_dir=FOLDER"
                ) from error
            raise
        _fsync_folder(path.parent)

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise
        except Exception as error:
            raise unreadable_checkpoint_error(Path(path), error) from error


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a filesystem that cannot sync a folder is left as it is."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
