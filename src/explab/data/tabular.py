"""scikit-learn's diabetes regression data, standardised with statistics of the training split only."""

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
    sklearn_data_file,
    stratified_split,
)


class DiabetesDataModule(TensorDataModule):
    """442 patients, 10 features, disease progression after a year; features (and target) standardised."""

    def __init__(
        self,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        standardize_target: bool = True,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        check_split_fractions(val_fraction, test_fraction)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.standardize_target = standardize_target
        self.target_mean, self.target_std = 0.0, 1.0
        self.feature_mean: list[float] = []
        self.feature_std: list[float] = []
        self.feature_names: list[str] = []

    def input_recipe(self) -> dict[str, Any]:
        """Raw rows are the 10 features in their own units; predictions come back in the target's unit."""
        self.ensure_loaded()
        return {
            "kind": "numeric",
            "raw_shape": [len(self.feature_mean)],
            "columns": self.feature_names,  # explab-predict reads a table's columns by these names
            "scale": 1.0,
            "mean": self.feature_mean,
            "std": self.feature_std,
            "shape": [len(self.feature_mean)],
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }

    def source(self) -> str:
        return sklearn_data_file("diabetes_data_raw.csv.gz")

    def load_splits(self) -> LoadedData:
        from sklearn.datasets import load_diabetes

        data = load_diabetes(scaled=False)
        x, y = data.data, data.target
        self.feature_names = [str(name) for name in data.feature_names]
        train, val, test = stratified_split(y, (self.val_fraction, self.test_fraction), self.seed, stratify=False)
        mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8
        self.feature_mean, self.feature_std = mean.tolist(), std.tolist()
        if self.standardize_target:
            self.target_mean, self.target_std = float(y[train].mean()), float(y[train].std())

        def split(idx: np.ndarray) -> Split:
            features = torch.from_numpy(((x[idx] - mean) / std).astype(np.float32))
            target = torch.from_numpy(((y[idx] - self.target_mean) / self.target_std).astype(np.float32))
            return Split(features, target)

        return LoadedData({"train": split(train), "val": split(val), "test": split(test)}, fingerprint_arrays(x, y))
