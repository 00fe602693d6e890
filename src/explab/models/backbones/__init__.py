"""Plain ``nn.Module`` backbones; a task module wraps any of them."""

from explab.models.backbones.cnn import ConvNet
from explab.models.backbones.mlp import MLP
from explab.models.backbones.ngrams import BagOfNgrams
from explab.models.backbones.text import TextRNN

__all__ = ["MLP", "BagOfNgrams", "ConvNet", "TextRNN"]
