"""MNIST-family data in the canonical IDX format (``train-images-idx3-ubyte[.gz]`` and friends)."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from explab.data.base import (
    LoadedData,
    Split,
    TensorDataModule,
    fingerprint_arrays,
    grey_image_recipe,
    train_val_test,
)
from explab.data.errors import DataError
from explab.data.files import download, find_file

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes, checking its magic number and that its size matches its header."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            raw = handle.read()
    except PermissionError:  # the file is whole, and not this account's to read: readable_by_this_account
        raise
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot be read ({err}); the file is truncated or corrupt: fetch it again") from err
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes; the file is truncated: fetch it again")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        raise DataError(
            f"{path}: magic number 0x{found:08x}, expected 0x{magic:08x} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels'}); this is not the IDX file it is named after"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header promises {'x'.join(map(str, dims))} = {expected} bytes of data, the file holds "
            f"{len(raw) - header}; it is truncated or corrupt: fetch it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class IDXDataModule(TensorDataModule):
    """MNIST or Fashion-MNIST from IDX files in ``data_dir``: train/val split by seed, test from t10k."""

    def __init__(
        self,
        data_dir: str,
        val_size: int | float = 5000,
        mean: float = 0.0,
        std: float = 1.0,
        flatten: bool = False,
        download: bool = False,
        mirrors: list[str] | None = None,
        how_to_get: str = "",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        self.data_dir = Path(data_dir)
        self.val_size = val_size
        self.mean, self.std = mean, std
        self.flatten = flatten
        self.download = download
        self.mirrors = list(mirrors or [])
        self.how_to_get = how_to_get

    def input_recipe(self) -> dict[str, Any]:
        """Raw images are 28x28 pixels of 0..255, as in the IDX files."""
        return grey_image_recipe(28, 255.0, self.mean, self.std, self.flatten)

    def source(self) -> str:
        return str(self.data_dir.resolve())

    def check_files(self) -> None:
        if not (self.download and self.mirrors):
            for name in (name for pair in FILES.values() for name in pair):
                find_file(self.data_dir, name, self.how_to_get)

    def _path(self, name: str) -> Path:
        try:
            return find_file(self.data_dir, name, self.how_to_get)
        except DataError:
            if not (self.download and self.mirrors):
                raise
            return download(self.mirrors, f"{name}.gz", self.data_dir)

    def _read(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        images_name, labels_name = FILES[split]
        images = read_idx(self._path(images_name), IMAGES_MAGIC)
        labels = read_idx(self._path(labels_name), LABELS_MAGIC)
        if images.ndim != 3:
            raise DataError(f"{images_name}: expected 3 dimensions (count, rows, cols), found {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{images_name} holds {len(images)} images but {labels_name} holds {labels.shape} labels; "
                "the two files do not belong together"
            )
        return images, labels

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        x = (torch.from_numpy(images.astype(np.float32)) / 255.0 - self.mean) / self.std
        return x.reshape(len(x), -1) if self.flatten else x.unsqueeze(1)

    def load_splits(self) -> LoadedData:
        train_images, train_labels = self._read("train")
        test_images, test_labels = self._read("test")
        splits = train_val_test(
            Split(self._tensor(train_images), torch.from_numpy(train_labels.astype(np.int64))),
            Split(self._tensor(test_images), torch.from_numpy(test_labels.astype(np.int64))),
            self.val_size,
            self.seed,
        )
        return LoadedData(splits, fingerprint_arrays(train_images, train_labels, test_images, test_labels))
