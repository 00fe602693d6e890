"""The shared shape of every explab data module: arrays in, tensors in memory, batches out."""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import numpy as np
from torch import Tensor

from explab.data.errors import DataError, readable_by_this_account
from explab.data.tensor_batches import TensorBatches
from explab.utils.epoch_progress import batches_trained_in_epoch, written_mid_epoch


@dataclass
class Split:
    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """A short, stable hash of array contents, dtypes and shapes: what the model actually saw."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def sklearn_data_file(name: str) -> str:
    """The file of one of scikit-learn's bundled data sets, inside the installed package (a data source)."""
    import sklearn.datasets

    return str(Path(sklearn.datasets.__file__).parent / "data" / name)


def grey_image_recipe(size: int, scale: float, mean: float, std: float, flatten: bool) -> dict[str, Any]:
    """The input recipe of square grey images: raw ``size`` x ``size`` pixels of 0..``scale``, normalised
    as ``(pixel / scale - mean) / std``, into ``[1, size, size]`` or, flattened, ``[size * size]``."""
    shape = [size * size] if flatten else [1, size, size]
    return {"kind": "numeric", "raw_shape": [size, size], "scale": scale, "mean": mean, "std": std, "shape": shape}


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """Refuse, before anything loads, fractions that ``stratified_split`` cannot honour."""
    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in [0, 1) and sum to less than 1"
        )


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, float], seed: int, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices for train / val / test, with ``fractions`` = (val, test) of the whole set."""
    from sklearn.model_selection import train_test_split

    val_fraction, test_fraction = fractions
    indices = np.arange(len(labels))
    strat = labels if stratify else None
    if stratify:
        _check_each_split_holds_every_class(labels, val_fraction, test_fraction)
    rest, test = train_test_split(indices, test_size=test_fraction, random_state=seed, stratify=strat)
    if val_fraction <= 0:
        return rest, np.array([], dtype=int), test
    rest_strat = labels[rest] if stratify else None
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=rest_strat
    )
    return train, val, test


def _check_each_split_holds_every_class(labels: np.ndarray, val_fraction: float, test_fraction: float) -> None:
    """Raise ``DataError`` where a fraction leaves a stratified split fewer samples than there are classes:
    scikit-learn's refusal speaks of its own ``test_size`` whichever split it was ("The test_size = 2 should
    be greater or equal to the number of classes = 10")."""
    n, classes = len(labels), len(np.unique(labels))
    least = _rounded_up(classes / n)
    n_test = math.ceil(test_fraction * n)  # as scikit-learn counts: the held-out side rounded up
    n_rest = n - n_test
    held_out = [("test_fraction", test_fraction, n_test, "")]
    n_val = 0  # no validation split: nothing to hold out of the rest
    if val_fraction > 0:
        n_val = math.ceil(val_fraction / (1 - test_fraction) * n_rest)
        held_out.append(("val_fraction", val_fraction, n_val, ", or 0 to train on every sample"))
    for key, value, count, fix in held_out:
        if count < classes:
            raise DataError(
                f"data.{key}={value} holds out {count} of the {n} samples, fewer than their {classes} classes: a "
                f"stratified split needs one of each. Give data.{key}={least} at least{fix}"
            )
    if n_rest - n_val < classes:
        raise DataError(
            f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} leave fewer training samples "
            f"than the {classes} classes out of {n}: lower them"
        )


def _rounded_up(value: float, digits: int = 2) -> float:
    """``value`` rounded up to ``digits`` significant digits: a fraction offered as enough is enough."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return math.ceil(value * scale) / scale


def holdout(n: int, val_size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation indices from a seeded permutation; ``val_size`` is a count or a fraction."""
    count = round(val_size * n) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if not 0 <= count < n:
        raise DataError(f"data.val_size={val_size} leaves no training data out of {n} samples: lower it")
    if count == 0 and val_size > 0:  # an empty validation set would fail the callbacks that follow val/ metrics
        raise DataError(
            f"data.val_size={val_size} holds out none of the {n} training samples: give a count (data.val_size=500) "
            f"or a fraction of {_rounded_up(1 / n)} at least, or 0 to train on every sample"
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[count:]), np.sort(order[:count])


def train_val_test(train: Split, test: Split, val_size: int | float, seed: int) -> dict[str, Split]:
    """Hold a seeded validation set out of ``train``; ``test`` stays as it is."""
    train_idx, val_idx = holdout(len(train), val_size, seed)
    return {
        "train": Split(train.x[train_idx], train.y[train_idx]),
        "val": Split(train.x[val_idx], train.y[val_idx]),
        "test": test,
    }


class LoadedData(NamedTuple):
    """What ``TensorDataModule.load_splits`` returns."""

    splits: dict[str, Split]  # "train", "val" (may be empty), "test"
    fingerprint: str  # ``fingerprint_arrays`` of the raw data the splits were cut from


class TensorDataModule(L.LightningDataModule):
    """A data module whose splits live in memory as tensors; subclasses implement ``load_splits``.

    ``load_splits`` runs once (``ensure_loaded``), whichever of Lightning's stages asks first.
    ``TensorBatches`` cuts batches by index and shards them over DDP ranks using the trainer's rank and
    world size. Subclasses may also override ``preprocessing`` (files a prediction needs, such as a
    vocabulary) and ``summary``.

    Its state in a checkpoint is where the training pass stands (``state_dict``), so a fit resumed from a
    checkpoint written mid-epoch trains the rest of that epoch's permutation: no sample of it twice, none
    left out, and the epochs after it shuffled as they would have been.
    """

    def __init__(self, batch_size: int = 64, eval_batch_size: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.seed = seed
        self.splits: dict[str, Split] = {}
        self.fingerprint: str = ""
        self._training: TensorBatches | None = None
        self._resumed_at = (0, 0)  # (epoch, samples trained over all ranks) of the first training pass

    def load_splits(self) -> LoadedData:
        """Read the data and cut it into splits.

        Returns:
            The train / val / test splits as tensors, and the fingerprint of the data they came from
            (``fingerprint_arrays``), which the run is tagged with.

        Raises:
            DataError: a file is missing or not in the expected format; the message says how to fix it.
        """
        raise NotImplementedError

    def check_source(self) -> None:
        """Raise DataError when a file this module reads is not where it looks, or not readable; nothing is
        read, so it runs before the job's run exists."""
        with readable_by_this_account():
            self.check_files()

    def check_files(self) -> None:
        """Raise DataError when a file this module reads is not where it looks. Modules whose data ships
        inside a package have nothing to check."""

    def ensure_loaded(self) -> None:
        """Load once; Lightning may call ``setup`` for several stages."""
        if not self.splits:
            with readable_by_this_account():
                self.splits, self.fingerprint = self.load_splits()
            if "train" in self.splits and len(self.splits["train"]) == 0:
                raise ValueError("the training split is empty: check the split fractions and the data")

    def setup(self, stage: str | None = None) -> None:
        self.ensure_loaded()
        self._check_every_rank_evaluates_a_sample()

    def _check_every_rank_evaluates_a_sample(self) -> None:
        """Raise ``DataError`` for a validation or test split smaller than the processes that evaluate it, each
        on samples of its own: Lightning failed the rank left with none ("TensorBatches within local rank has
        zero length"), and the others with gloo's "Connection closed by peer", once the fit was over."""
        world = self._rank_world()[1]
        for name in ("val", "test"):
            held = len(self.splits[name]) if name in self.splits else 0
            if 0 < held < world:
                keys = [f"data.{key}" for key in (f"{name}_fraction", f"{name}_size") if hasattr(self, key)]
                raise DataError(
                    f"the {name} split holds {held} sample(s), and each of the {world} processes that evaluate it "
                    f"needs one of its own: give a larger {name} split"
                    + (f" ({' or '.join(keys)})" if keys else "")
                    + f", or evaluate on {held} device(s) at most (trainer.devices)"
                )

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _sanity_check_batch_size(self) -> int | None:
        """Training-sized batches for Lightning's sanity check, which runs validation's code on a couple of
        batches before training only to catch bugs early (its numbers are discarded); evaluation-sized ones
        would cost more and prove no more (``bench/overhead.py`` measures the fit)."""
        trainer = self.trainer
        if trainer is None or not trainer.sanity_checking or not math.isfinite(trainer.num_sanity_val_steps):
            return None  # num_sanity_val_steps=-1 asks for the whole split: it gets every evaluation batch
        return min(self.batch_size, self.eval_batch_size)

    def _batches(self, name: str, train: bool) -> TensorBatches:
        self.ensure_loaded()
        if name not in self.splits:
            raise KeyError(f"this data module has no '{name}' split; it has {sorted(self.splits)}")
        split = self.splits[name]
        rank, world = self._rank_world()
        return TensorBatches(
            (split.x, split.y),
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            rank=rank,
            world_size=world,
            batch_size_for_pass=None if train else self._sanity_check_batch_size,
            epoch=self._resumed_at[0] if train else 0,
            skip_samples=self._resumed_at[1] if train else 0,
        )

    def train_dataloader(self) -> TensorBatches:
        self._training = self._batches("train", train=True)
        return self._training

    def state_dict(self) -> dict[str, Any]:
        """Where training stands, for a checkpoint: the epoch of the next pass over the training split, and the
        samples of it already trained on, by all ranks together; empty before the first pass.

        The samples are counted from the batches Lightning has trained, not from those fetched (its loop
        fetches one ahead), wherever a checkpoint is written: after a batch or a validation, at an epoch's end.
        Counted over all ranks, they mean the same to a fit resumed on another number of them.
        """
        training, trainer = self._training, self.trainer
        if training is None or training.pass_epoch is None or trainer is None:
            return {}
        if not written_mid_epoch(trainer):  # the pass is over: a resume starts the next one
            return {"epoch": training.pass_epoch + 1, "samples_trained": 0}
        trained = batches_trained_in_epoch(trainer) * training.batch_size * training.world_size
        return {"epoch": training.pass_epoch, "samples_trained": trained}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Start the training batches where a checkpoint's ``state_dict`` says training stood (Lightning
        restores it before it asks for the batches)."""
        if "epoch" in state_dict:
            # "skip_samples", the count of earlier checkpoints, was one rank's samples: the same ranks resume them
            trained = state_dict.get("samples_trained", state_dict.get("skip_samples", 0) * self._rank_world()[1])
            self._resumed_at = (int(state_dict["epoch"]), int(trained))
            # Lightning looks for a state on the batches themselves, finds none, and warns that a fit resumed
            # mid-epoch is unreliable; here that fit goes on where it stood
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before the epoch ended")

    def batches_skipped_on_resume(self) -> tuple[int, int] | None:
        """The training batches per rank, in this fit's batch size, that the first pass leaves out as trained
        before the checkpoint it resumed from (``TensorBatches.batches_skipped``), and the batches per rank of a
        whole pass; None unless the fit resumed inside a pass."""
        if not self._resumed_at[1]:
            return None
        batches = self._batches("train", train=True)
        return batches.batches_skipped(), len(batches)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", train=False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", train=False)

    def predict_dataloader(self) -> TensorBatches:
        return self._batches("test", train=False)

    @property
    def input_example(self) -> Tensor:
        """A small batch of inputs, for model signatures and shape checks."""
        self.ensure_loaded()
        return self.splits["train"].x[:2]

    def preprocessing(self) -> dict[str, dict]:
        """Files a prediction needs beside the model, logged with the run.

        Returns:
            File name -> JSON-serialisable content; empty for array inputs (the default).
        """
        return {}

    def source(self) -> str:
        """Where the data is read from, recorded as the source of the run's MLflow dataset inputs.

        Returns:
            A file or folder path (for data that ships inside a package, the file in the package); the
            default names the data module's class, for data that is made in code.
        """
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def input_recipe(self) -> dict[str, Any]:
        """How a raw input becomes what the network takes, for the logged model (see ``explab.serving``).

        Returns:
            A JSON-serialisable recipe; the default, ``{"kind": "tensor", "dtype": ...}``, says the inputs
            are already what the network takes.
        """
        return {"kind": "tensor", "dtype": str(self.input_example.dtype).removeprefix("torch.")}

    def example_texts(self) -> list[str] | None:
        """A few raw training texts, for the logged model's input example; None for non-text data."""
        return None

    def test_fingerprint(self) -> str:
        """``fingerprint_arrays`` of the test split as the model sees it (empty without one): two tests measure
        the same set only if this agrees, whatever the split's seed, fractions or scaling."""
        test = self.splits.get("test")
        return fingerprint_arrays(test.x.cpu().numpy(), test.y.cpu().numpy()) if test is not None and len(test) else ""

    def summary(self) -> dict[str, int]:
        """Split sizes (``n_train``, ...), tagged on the run as ``data.n_train``, ..."""
        return {f"n_{name}": len(split) for name, split in self.splits.items()}
