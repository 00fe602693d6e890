"""scikit-learn's 8x8 handwritten digits: real data that ships with a dependency, so it runs offline."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from explab.data.base import (
    LoadedData,
    Split,
    TensorDataModule,
    check_split_fractions,
    fingerprint_arrays,
    grey_image_recipe,
    sklearn_data_file,
    stratified_split,
)


class DigitsDataModule(TensorDataModule):
    """1797 images of 8x8 pixels (0..16), stratified into train/val/test with a fixed seed."""

    def __init__(
        self,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        flatten: bool = False,
        mean: float = 0.5,
        std: float = 0.5,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        check_split_fractions(val_fraction, test_fraction)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.flatten = flatten
        self.mean, self.std = mean, std

    def input_recipe(self) -> dict[str, Any]:
        """Raw digits are 8x8 pixels of 0..16."""
        return grey_image_recipe(8, 16.0, self.mean, self.std, self.flatten)

    def source(self) -> str:
        return sklearn_data_file("digits.csv.gz")

    def load_splits(self) -> LoadedData:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = (bunch.images.astype(np.float32) / 16.0 - self.mean) / self.std
        labels = bunch.target.astype(np.int64)
        x = torch.from_numpy(images.reshape(len(images), -1) if self.flatten else images[:, None])
        y = torch.from_numpy(labels)
        train, val, test = stratified_split(labels, (self.val_fraction, self.test_fraction), self.seed)
        splits = {name: Split(x[idx], y[idx]) for name, idx in (("train", train), ("val", val), ("test", test))}
        return LoadedData(splits, fingerprint_arrays(bunch.images, labels))
