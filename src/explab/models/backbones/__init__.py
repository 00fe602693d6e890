"""Plain ``nn.Module`` backbones; a task module wraps any of them."""

from explab.models.backbones.cnn import ConvNet
from explab.models.backbones.mlp import MLP
from explab.models.backbones.text import TextRNN

__all__ = ["MLP", "ConvNet", "TextRNN"]
