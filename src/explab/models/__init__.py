"""Models: backbones (plain ``nn.Module``) and the task modules that train them."""

from explab.models.backbones import MLP, BagOfNgrams, ConvNet, TextRNN
from explab.models.lazy_adam import LazyAdam
from explab.models.tasks import ClassificationTask, RegressionTask, TaskModule

__all__ = [
    "MLP",
    "BagOfNgrams",
    "ClassificationTask",
    "ConvNet",
    "LazyAdam",
    "RegressionTask",
    "TaskModule",
    "TextRNN",
]
