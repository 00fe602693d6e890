"""scikit-learn's wine recognition data (178 wines, 13 chemical measurements, 3 cultivars)."""

from __future__ import annotations

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

    def source(self) -> str:
        """The file the data is read from, recorded on each run as its MLflow dataset's source."""
        return sklearn_data_file("wine_data.csv")

    def load_splits(self) -> LoadedData:
        from sklearn.datasets import load_wine

        x, y = load_wine(return_X_y=True)
        train, val, test = stratified_split(y, (self.val_fraction, self.test_fraction), self.seed)
        mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8

        def split(indices: np.ndarray) -> Split:
            features = torch.from_numpy(((x[indices] - mean) / std).astype(np.float32))
            return Split(features, torch.from_numpy(y[indices].astype(np.int64)))

        splits = {"train": split(train), "val": split(val), "test": split(test)}
        return LoadedData(splits, fingerprint_arrays(x, y))
