"""Data modules: one per data family, all batching tensors held in memory."""

from explab.data.base import Split, TensorDataModule
from explab.data.cifar import CIFAR10DataModule
from explab.data.digits import DigitsDataModule
from explab.data.errors import DataError
from explab.data.idx import IDXDataModule
from explab.data.tabular import DiabetesDataModule
from explab.data.text import IMDBDataModule, MovieSnippetsDataModule

__all__ = [
    "CIFAR10DataModule",
    "DataError",
    "DiabetesDataModule",
    "DigitsDataModule",
    "IDXDataModule",
    "IMDBDataModule",
    "MovieSnippetsDataModule",
    "Split",
    "TensorDataModule",
]
