"""Read explab checkpoints safely: tensors and plain data only, with errors that say what to do."""

from __future__ import annotations

import errno
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explab.errors import ExplabError, first_sentence

if TYPE_CHECKING:
    import torch

# where a checkpoint holds explab's record of its run (``callbacks.RecordInCheckpoint``): the config and run id
CHECKPOINT_KEY = "explab"
# the training sums of the epoch a checkpoint was written in, when it was written mid-epoch (models.tasks)
EPOCH_SUMS_KEY = "explab_epoch_sums"


class CheckpointError(ExplabError, RuntimeError):
    """A checkpoint that is missing, corrupt, tampered with, or not written by explab."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: a checkpoint that smuggles in objects is refused, not executed.

    The tensors are memory-mapped, read from the file only when used: a resume's checks and a requeued job's
    lookup of its run read the record, the epoch and the weights' shapes, not gigabytes of weights and
    optimizer state that Lightning reads again for the fit (on every DDP rank)."""
    path = Path(path)
    try:
        return _checked(path)
    except PermissionError as error:
        raise unreadable_by_this_account(path, error) from error


def _checked(path: Path) -> dict[str, Any]:
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.ckpt"))
        raise CheckpointError(
            f"checkpoint {path} is a folder; give a .ckpt file in it"
            + (f" ({', '.join(found)})" if found else ", or a run_id")
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give an existing .ckpt file or a run_id")
    try:
        checkpoint = _mapped(path)
    except PermissionError:
        raise  # load_checkpoint names the account that may not read it
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        raise unreadable_checkpoint_error(path, err) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} has no state_dict: it is not a Lightning checkpoint")
    return checkpoint


def _mapped(path: Path) -> Any:
    import torch  # here, not above: naming a checkpoint that is missing, or reading its record, needs no torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap can only be used" not in str(err):
            raise
        # torch.save's legacy format (_use_new_zipfile_serialization=False) is no zip archive to map
        return torch.load(path, map_location="cpu", weights_only=True)


def unreadable_by_this_account(path: Path, error: PermissionError) -> CheckpointError:
    """The error for a checkpoint this account may not read: another's file, or one in another's folder,
    made with their umask or kept private (a colleague's run folder on a shared file system)."""
    return CheckpointError(
        f"checkpoint {path} cannot be read by this account: {error.strerror} on {error.filename or path}. Its "
        "owner can let you read it (chmod a+r on the file, a+x on its folders), or copy it where you can"
    )


def unreadable_checkpoint_error(path: Path, error: BaseException) -> CheckpointError:
    """The error for a checkpoint ``torch.load`` could not read: truncated (an incomplete zip archive, or
    empty), or refused because it holds arbitrary objects; named by its path either way.

    A file cut off within its tensors still ends in a zip directory of the entries before the cut, whose
    offsets lead past the end: torch's reader then fails with ``OSError: [Errno 22] Invalid argument``.
    """
    size = path.stat().st_size if path.is_file() else 0
    said = first_sentence(error)
    past_the_end = isinstance(error, OSError) and error.errno == errno.EINVAL
    if size == 0 or isinstance(error, EOFError) or past_the_end or "central directory" in said or "zip archive" in said:
        return CheckpointError(
            f"checkpoint {path} is truncated ({size} bytes): it was cut off while being written or copied. "
            f"Resume from another checkpoint in {path.parent}, or train again ({said})"
        )
    return CheckpointError(
        f"checkpoint {path} cannot be loaded safely (corrupt, or holding arbitrary objects): "
        f"{refusal_reason(error)}. Use a checkpoint written by explab-train, or train again."
    )


def refusal_reason(error: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's surrounding paragraphs: they
    advise loading it again with ``weights_only=False``, which would run whatever the file holds."""
    text = str(error).split("WeightsUnpickler error:")[-1]
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = (line.strip() for line in text.splitlines())
    return next((line for line in lines if line and not line.startswith(advice)), type(error).__name__)


def recorded_config(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    record = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(record, dict) or "config" not in record:
        raise CheckpointError(f"checkpoint {path} carries no explab config: it was not written by explab-train")
    return record


COMPILED = "_orig_mod."  # what torch.compile's wrapper puts before the names of the module it wraps


def plain_weights(state_dict: dict[str, Any]) -> dict[str, Any]:
    """``state_dict`` under the names of an uncompiled model: a backbone ``torch.compile`` wrapped saves
    ``backbone._orig_mod.x`` for ``backbone.x``. Checkpoints are saved this way, so whether a run was compiled
    does not decide which model can load them."""
    return {key.replace(COMPILED, ""): value for key, value in state_dict.items()}


def weights_mismatch(model: torch.nn.Module, state_dict: dict[str, Any], shown: int = 3) -> str:
    """How ``state_dict`` (a checkpoint's weights) fails to fit ``model``: keys it lacks, keys the model lacks
    and tensors of another shape, a few of each named; empty when it fits. ``model`` may be on the meta device.
    A compiled backbone's ``_orig_mod`` is ignored on both sides."""

    def shapes(tensors: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        return {key: tuple(value.shape) for key, value in plain_weights(tensors).items()}

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")

    expected, saved = shapes(model.state_dict()), shapes(state_dict)
    missing = sorted(expected.keys() - saved.keys())
    unexpected = sorted(saved.keys() - expected.keys())
    reshaped = [
        f"{key} {list(saved[key])} in the checkpoint, {list(expected[key])} in the model"
        for key in sorted(expected.keys() & saved.keys())
        if saved[key] != expected[key]
    ]
    return "; ".join(
        f"{what} {few(keys)}"
        for what, keys in (
            ("the checkpoint lacks", missing),
            ("the model lacks", unexpected),
            ("shapes differ:", reshaped),
        )
        if keys
    )
