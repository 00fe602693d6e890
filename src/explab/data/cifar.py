"""CIFAR-10 from the ``cifar-10-batches-py`` pickles, read by an unpickler that accepts numpy arrays only."""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from explab.data.base import LoadedData, Split, TensorDataModule, fingerprint_arrays, train_val_test
from explab.data.errors import DataError
from explab.data.files import readable

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
HOW_TO_GET = (
    "CIFAR-10 (python version) is cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html; "
    "unpack it so the folder holds data_batch_1 .. data_batch_5 and test_batch."
)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """A CIFAR batch is a dict of numpy arrays, lists and bytes; any other object is refused, not built."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 3, 32, 32], labels int64 [N])`` from one batch file, every field checked."""
    try:
        batch = _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise DataError(f"{path}: not a valid CIFAR-10 batch ({err}); fetch the file again") from err
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a dict of arrays, found {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"{path}: 'data' must be a uint8 array of shape [N, 3072], found "
            f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        )
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (len(data),) or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{path}: {len(data)} images need as many labels in 0..9, found shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def random_crop_flip(
    x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crops (after zero padding) and horizontal flips for a whole batch at once."""
    n, c, h, w = x.shape
    if padding:
        padded = F.pad(x, (padding, padding, padding, padding))
        top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
        left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
        rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[
            torch.arange(n, device=x.device)[:, None, None, None],
            torch.arange(c, device=x.device)[None, :, None, None],
            rows,
            cols,
        ]
    if flip:
        mask = torch.rand(n, generator=generator, device=x.device) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def per_channel(name: str, value: float | Sequence[float]) -> torch.Tensor:
    """A normalisation statistic as a ``[1, 3, 1, 1]`` tensor: one value for every channel, or one per channel;
    another count is a ``ValueError`` naming it."""
    values = torch.as_tensor(value, dtype=torch.float32).flatten()
    if values.numel() == 1:
        values = values.expand(3)
    if values.numel() != 3:
        raise ValueError(
            f"{name} gives {values.numel()} values, and CIFAR-10 images have 3 channels (red, green, blue): "
            "give one per channel, or one for all"
        )
    return values.reshape(1, 3, 1, 1).clone()


class CIFAR10DataModule(TensorDataModule):
    """CIFAR-10 with a seeded validation hold-out, per-channel normalisation and optional batch augmentation."""

    def __init__(
        self,
        data_dir: str,
        val_size: int | float = 0.1,
        mean: float | tuple[float, float, float] = (0.4914, 0.4822, 0.4465),
        std: float | tuple[float, float, float] = (0.2470, 0.2435, 0.2616),
        augment: bool = False,
        crop_padding: int = 4,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        self.data_dir = Path(data_dir)
        self.val_size = val_size
        self.mean = per_channel("mean", mean)
        self.std = per_channel("std", std)
        self.augment = augment
        self.crop_padding = crop_padding

    def input_recipe(self) -> dict[str, Any]:
        """Raw images are 32x32x3 pixels of 0..255, channels last as image files are read."""
        return {
            "kind": "numeric",
            "raw_shape": [32, 32, 3],
            "channels_last": True,
            "scale": 255.0,
            "mean": self.mean.reshape(3, 1, 1).tolist(),
            "std": self.std.reshape(3, 1, 1).tolist(),
            "shape": [3, 32, 32],
        }

    def source(self) -> str:
        return str(self.data_dir.resolve())

    def check_files(self) -> None:
        for name in (*TRAIN_BATCHES, TEST_BATCH):
            self._batch_path(name)

    def _batch_path(self, name: str) -> Path:
        for folder in (self.data_dir, self.data_dir / "cifar-10-batches-py"):
            if (folder / name).is_file():
                return readable(folder / name)
        raise DataError(
            f"{name} not found in {self.data_dir.resolve()}.\n{HOW_TO_GET}\n"
            "Then point the experiment at that folder: data.data_dir=/path/to/cifar-10-batches-py"
        )

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(images).float() / 255.0 - self.mean) / self.std

    def load_splits(self) -> LoadedData:
        parts = [read_batch(self._batch_path(name)) for name in TRAIN_BATCHES]
        train_images = np.concatenate([p[0] for p in parts])
        train_labels = np.concatenate([p[1] for p in parts])
        test_images, test_labels = read_batch(self._batch_path(TEST_BATCH))
        splits = train_val_test(
            Split(self._tensor(train_images), torch.from_numpy(train_labels)),
            Split(self._tensor(test_images), torch.from_numpy(test_labels)),
            self.val_size,
            self.seed,
        )
        return LoadedData(splits, fingerprint_arrays(train_images, train_labels, test_images, test_labels))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.augment and self.trainer is not None and self.trainer.training:
            x, y = batch
            return random_crop_flip(x, self.crop_padding, flip=True), y
        return batch
