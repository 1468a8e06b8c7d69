"""Batching by length: buckets of similar duration, capped by total padded size per batch."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist


class DurationBucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields batches of indices whose padded size ``len(batch) * max(duration)`` stays under
    ``max_batch_duration`` (seconds of audio, or any length unit), so long utterances come in
    small batches and short ones in large batches.

    Items are sorted by length inside shuffled windows of ``bucket_size`` items, cut into
    batches, and the batch order is shuffled each epoch (``set_epoch``, called by Lightning).

    Under DDP every rank gets the same number of batches: the batch list is padded by repeating
    batches from its start, then rank ``r`` takes batches ``r, r + world, ...``. The rank comes
    from ``torch.distributed`` at iteration time, which is why trainers set
    ``use_distributed_sampler: false`` (Lightning cannot re-shard a custom batch sampler).
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_duration: float,
        max_batch_size: int | None = None,
        bucket_size: int = 512,
        shuffle: bool = True,
        seed: int = 0,
    ):
        if max_batch_duration <= 0:
            raise ValueError(f"max_batch_duration must be positive, got {max_batch_duration}")
        too_long = [i for i, d in enumerate(durations) if d > max_batch_duration]
        if too_long:
            raise ValueError(
                f"{len(too_long)} item(s) are longer than max_batch_duration="
                f"{max_batch_duration} (e.g. index {too_long[0]}: {durations[too_long[0]]:.2f}); "
                "raise max_batch_duration or lower the max_duration filter"
            )
        self.durations = list(durations)
        self.max_batch_duration = max_batch_duration
        self.max_batch_size = max_batch_size
        self.bucket_size = bucket_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.shuffle:
            order = torch.randperm(len(self.durations), generator=generator).tolist()
        else:
            order = list(range(len(self.durations)))
        batches = []
        for start in range(0, len(order), self.bucket_size):
            bucket = sorted(order[start : start + self.bucket_size], key=self.durations.__getitem__)
            batches.extend(self._cut(bucket))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return batches

    def _cut(self, sorted_indices: list[int]) -> Iterator[list[int]]:
        batch: list[int] = []
        longest = 0.0
        for index in sorted_indices:
            candidate_longest = max(longest, self.durations[index])
            full = self.max_batch_size is not None and len(batch) >= self.max_batch_size
            if batch and (full or candidate_longest * (len(batch) + 1) > self.max_batch_duration):
                yield batch
                batch, candidate_longest = [], self.durations[index]
            batch.append(index)
            longest = candidate_longest
        if batch:
            yield batch

    @staticmethod
    def _rank_and_world() -> tuple[int, int]:
        return rank_and_world()

    def _shard(self, batches: list[list[int]]) -> list[list[int]]:
        rank, world = self._rank_and_world()
        if world == 1 or not batches:
            return batches
        per_rank = math.ceil(len(batches) / world)
        padded = [batches[i % len(batches)] for i in range(per_rank * world)]
        return padded[rank::world]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._shard(self._all_batches())

    def __len__(self) -> int:
        return len(self._shard(self._all_batches()))


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def training_sampler(
    dataset: torch.utils.data.Dataset, seed: int = 0
) -> torch.utils.data.DistributedSampler | None:
    """A shuffling ``DistributedSampler`` when running under DDP, else None (plain shuffle).

    Trainers set ``use_distributed_sampler: false`` because the speech batch sampler shards
    itself, so the other datamodules shard their training data here. Evaluation stays unsharded:
    every rank scores the whole split, which keeps per-video / per-image metrics exact.
    """
    rank, world = rank_and_world()
    if world == 1:
        return None
    return torch.utils.data.DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed
    )
