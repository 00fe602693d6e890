"""scikit-learn's wine recognition data (178 wines, 13 chemical measurements, 3 cultivars)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from explab.data.base import (
    LoadedData,
    Split,
    TensorDataModule,
    fingerprint_arrays,
    sklearn_data_file,
    stratified_split,
)


class WineDataModule(TensorDataModule):
    """Stratified train / val / test splits, features standardised with the training split's statistics."""

    def __init__(
        self, val_fraction: float = 0.2, test_fraction: float = 0.2, batch_size: int = 32, seed: int = 0
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.feature_names: list[str] = []
        self.feature_mean: list[float] = []
        self.feature_std: list[float] = []

    def source(self) -> str:
        """The file the data is read from, recorded on each run as its MLflow dataset's source."""
        return sklearn_data_file("wine_data.csv")

    def input_recipe(self) -> dict[str, Any]:
        """How a raw input becomes what the network takes, logged with the model: a row of the 13 measurements in
        their own units, found by name in a table's header, standardised as the training split was. Without
        it the logged model would take the standardised tensors, which no one outside this module has."""
        self.ensure_loaded()
        features = len(self.feature_names)
        return {
            "kind": "numeric",
            "raw_shape": [features],
            "columns": self.feature_names,
            "scale": 1.0,
            "mean": self.feature_mean,
            "std": self.feature_std,
            "shape": [features],
        }

    def load_splits(self) -> LoadedData:
        from sklearn.datasets import load_wine

        wine = load_wine()
        x, y = wine.data, wine.target
        train, val, test = stratified_split(y, (self.val_fraction, self.test_fraction), self.seed)
        mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8
        self.feature_names = [str(name) for name in wine.feature_names]
        self.feature_mean, self.feature_std = mean.tolist(), std.tolist()

        def split(indices: np.ndarray) -> Split:
            features = torch.from_numpy(((x[indices] - mean) / std).astype(np.float32))
            return Split(features, torch.from_numpy(y[indices].astype(np.int64)))

        splits = {"train": split(train), "val": split(val), "test": split(test)}
        return LoadedData(splits, fingerprint_arrays(x, y))
