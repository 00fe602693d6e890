"""Embedding -> bidirectional LSTM/GRU -> attention pooling -> linear, for padded token ids (0 = padding)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AttentionPooling(nn.Module):
    """A learned weighted mean over time steps; padding gets no weight."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.score = nn.Linear(features, 1)

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        # in float32: under autocast the score layer answers in bfloat16 beside float32 states (a CPU's recurrent
        # layers stay float32), and float32's floor as the padding's score does not fit in bfloat16
        scores = self.score(states).squeeze(-1).float()
        weights = scores.masked_fill(~mask, torch.finfo(scores.dtype).min).softmax(dim=-1).unsqueeze(-1)
        return (weights.to(states.dtype) * states).sum(dim=1)


class TextRNN(nn.Module):
    """``depth`` recurrent layers of ``width`` units per direction; ``cell`` is lstm or gru."""

    def __init__(
        self,
        vocab_size: int,
        num_outputs: int,
        embed_dim: int = 128,
        width: int = 128,
        depth: int = 1,
        cell: str = "gru",
        bidirectional: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell)
        if rnn is None:
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        if depth < 1 or embed_dim < 1:
            raise ValueError(f"TextRNN needs depth >= 1 and embed_dim >= 1, got {depth} and {embed_dim}")
        self.vocab_size = vocab_size  # what the task module checks the data's token ids against
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.rnn = rnn(
            embed_dim,
            width,
            num_layers=depth,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if depth > 1 else 0.0,
        )
        features = width * (2 if bidirectional else 1)
        self.pool = AttentionPooling(features)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(features, num_outputs)

    def forward(self, ids: Tensor) -> Tensor:
        mask = ids != 0
        mask[:, 0] = True  # an all-padding row still pools over one step
        states, _ = self.rnn(self.dropout(self.embedding(ids)))
        return self.head(self.dropout(self.pool(states, mask)))
