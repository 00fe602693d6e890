"""Models: backbones (plain ``nn.Module``) and the task modules that train them."""

from explab.models.backbones import MLP, ConvNet, TextRNN
from explab.models.tasks import ClassificationTask, RegressionTask, TaskModule

__all__ = ["MLP", "ClassificationTask", "ConvNet", "RegressionTask", "TaskModule", "TextRNN"]
