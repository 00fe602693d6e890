"""Batches cut by index from tensors held in memory: no per-sample Python work, no worker processes.

For data that fits in memory this is as fast as batching gets on a CPU, and it keeps DDP sharding and
shuffling deterministic: every rank draws the same permutation from ``seed + epoch`` and takes its slice.
That also makes a pass resumable from two numbers, its epoch and the samples of it already trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor


class TensorBatches:
    """An iterable of ``(x, y)`` batches over in-memory tensors, sharded across ranks.

    Training shards are padded (by wrapping around the permutation, as ``DistributedSampler`` does) so every
    rank runs the same number of steps; evaluation shards are disjoint and unpadded so metrics synced over
    ranks equal the metric over the whole split.

    Each pass (``iter``) takes the permutation of ``epoch`` and then counts ``epoch`` on; ``pass_epoch`` is
    the epoch of the pass begun last. ``skip_samples`` leaves out the start of the next pass only: that many
    samples of its permutation, counted over all ranks, which a resumed fit already trained on; the rest is
    sharded over this fit's ranks, however many the interrupted fit had.
    """

    def __init__(
        self,
        tensors: tuple[Tensor, ...],
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad_shards: bool | None = None,
        batch_size_for_pass: Callable[[], int | None] | None = None,
        epoch: int = 0,
        skip_samples: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        sizes = {len(t) for t in tensors}
        if len(sizes) != 1:
            raise ValueError(f"all tensors must have the same length, got {sorted(sizes)}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad_shards = shuffle if pad_shards is None else pad_shards
        # asked at the start of each pass: a batch size for this pass only (None: batch_size); len() keeps
        # counting batch_size batches, so a consumer's batch limits mean the same in every pass
        self.batch_size_for_pass = batch_size_for_pass
        self.epoch = epoch
        self.skip_samples = skip_samples
        self.pass_epoch: int | None = None

    @property
    def num_samples(self) -> int:
        return len(self.tensors[0])

    def _shard_size(self, skip: int = 0) -> int:
        n, w = self.num_samples - min(skip, self.num_samples), self.world_size
        if self.pad_shards:
            return math.ceil(n / w)
        return len(range(self.rank, n, w))

    def _batch_count(self, shard_size: int) -> int:
        return shard_size // self.batch_size if self.drop_last else math.ceil(shard_size / self.batch_size)

    def __len__(self) -> int:
        """The batches of a whole pass on this rank."""
        return self._batch_count(self._shard_size())

    def last_batch_size(self) -> int:
        """The samples of the last batch of a whole pass on this rank (0 for an empty pass)."""
        shard = self._shard_size()
        if self.drop_last:
            return self.batch_size if shard >= self.batch_size else 0
        return shard % self.batch_size or min(shard, self.batch_size)

    def batches_skipped(self) -> int:
        """The batches of a whole pass on this rank that the next pass leaves out for ``skip_samples``: where a
        loop that counts a pass's batches against ``len`` stands when the next pass begins."""
        return len(self) - self._batch_count(self._shard_size(self.skip_samples))

    def _indices(self, skip: int) -> Tensor:
        n = self.num_samples
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        # Rank r of w takes positions r, r + w, ... of the order, so the first k samples of every rank are the
        # order's first k * w: cutting those off and sharding the rest gives each rank what it has left on the
        # same number of ranks, and on another number the samples the interrupted fit never reached.
        rest = order[min(skip, n) :]
        if self.world_size == 1:
            return rest
        short = -len(rest) % self.world_size
        if self.pad_shards and short:
            rest = torch.cat([rest, order[:short]])
        return rest[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        skip, self.skip_samples = self.skip_samples, 0
        indices = self._indices(skip)
        self.pass_epoch, self.epoch = self.epoch, self.epoch + 1
        size = (self.batch_size_for_pass() if self.batch_size_for_pass else None) or self.batch_size
        end = len(indices) // self.batch_size * self.batch_size if self.drop_last else len(indices)
        if not self.shuffle and self.world_size == 1:
            # contiguous slices are views: no copy at all
            first = self.num_samples - len(indices)
            for start in range(first, first + end, size):
                yield tuple(t[start : start + size] for t in self.tensors)
            return
        for start in range(0, end, size):
            idx = indices[start : start + size]
            yield tuple(t[idx] for t in self.tensors)
