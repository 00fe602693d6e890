"""A bag of words and hashed word bigrams, averaged into one embedding (fastText's classifier), for padded
token ids (0 = padding)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

PAD = 0
BIGRAM_HASH = 1_000_003  # a prime, so neighbouring token ids spread over the buckets


class BagOfNgrams(nn.Module):
    """Mean of the embeddings of every token and of every pair of neighbouring tokens, then a linear layer.

    Bigrams are hashed into ``buckets`` extra rows after the vocabulary, so no bigram vocabulary is kept and
    a prediction needs only the token vocabulary. ``token_dropout`` blanks that share of the tokens of each
    training text (a strong regulariser for short texts); ``dropout`` acts on the averaged embedding.

    ``linear`` adds to the logits a score per n-gram, averaged over the text (a logistic regression on the
    bag, beside the embedding's low-rank one): the full-rank part a linear baseline has. ``sparse`` gives
    the embedding tables sparse gradients, so an optimiser that takes them (``optimizer=lazy_adam``)
    updates only the rows a batch uses instead of all of them.
    """

    def __init__(
        self,
        vocab_size: int,
        num_outputs: int,
        embed_dim: int = 64,
        buckets: int = 65_536,
        dropout: float = 0.5,
        token_dropout: float = 0.3,
        linear: bool = False,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        if buckets < 1 or embed_dim < 1:
            raise ValueError(f"BagOfNgrams needs buckets >= 1 and embed_dim >= 1, got {buckets} and {embed_dim}")
        self.vocab_size, self.buckets, self.token_dropout = vocab_size, buckets, token_dropout
        rows = vocab_size + buckets
        self.embedding = nn.EmbeddingBag(rows, embed_dim, mode="mean", padding_idx=PAD, sparse=sparse)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, num_outputs)
        self.linear: nn.EmbeddingBag | None = None
        if linear:
            self.linear = nn.EmbeddingBag(rows, num_outputs, mode="mean", padding_idx=PAD, sparse=sparse)
            nn.init.zeros_(self.linear.weight)  # starts as the embedding model alone

    def ngrams(self, ids: Tensor) -> Tensor:
        """Token ids followed by their hashed bigram ids; a bigram with padding in it is padding."""
        first, second = ids[:, :-1], ids[:, 1:]
        bigrams = (first * BIGRAM_HASH + second) % self.buckets + self.vocab_size
        bigrams = torch.where((first == PAD) | (second == PAD), torch.zeros_like(bigrams), bigrams)
        return torch.cat([ids, bigrams], dim=1)

    def forward(self, ids: Tensor) -> Tensor:
        if self.training and self.token_dropout > 0:
            ids = ids.masked_fill(torch.rand(ids.shape, device=ids.device) < self.token_dropout, PAD)
        ngrams = self.ngrams(ids)
        logits = self.head(self.dropout(self.embedding(ngrams)))
        return logits if self.linear is None else logits + self.linear(ngrams)
