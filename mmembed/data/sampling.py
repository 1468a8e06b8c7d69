"""Training batches as a pure function of (seed, epoch), sharded across ranks and resumable.

Every batch sampler here derives an epoch's batches from its own generator seeded with
``seed + epoch`` (never from the global RNG), so a checkpoint only has to say which epoch was
running and how many of its batches were trained: :meth:`EpochBatchSampler.resume` continues at
the next batch (exact mid-epoch resume, see :meth:`TaskDataModule.state_dict
<mmembed.data.datamodule.TaskDataModule.state_dict>`). Each batch also carries a seed
(:class:`SeededBatch`) from which :class:`SeededItems` draws the random choices of loading it
(augmentation, speed perturbation, clip starts): data randomness depends on (seed, epoch,
batch, rank) only, not on the model's RNG stream, on prefetching, or on the number of workers.

Under DDP every rank gets the same number of batches: the batch list is padded by repeating
batches from its start, then rank ``r`` takes batches ``r, r + world, ...``. The rank comes from
``torch.distributed`` at iteration time, which is why trainers set
``use_distributed_sampler: false`` (Lightning cannot re-shard a custom batch sampler).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


class SeededBatch(list):
    """A batch of item indices, with the seed the random draws of loading it use."""

    def __init__(self, indices: Sequence[int], seed: int):
        super().__init__(indices)
        self.seed = seed

    def __reduce__(self):  # sent to data-loader workers
        return (SeededBatch, (list(self), self.seed))


@contextmanager
def seeded_random(seed: int) -> Iterator[None]:
    """Python, numpy and torch (CPU) random draws from ``seed`` inside; the global streams are
    left exactly as they were."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class SeededItems(torch.utils.data.Dataset):
    """A map-style dataset whose batches load under their own seed (``SeededBatch.seed``):
    the DataLoader hands each batch of indices to ``__getitems__``."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        seed = getattr(indices, "seed", None)
        if seed is None:
            return [self.dataset[i] for i in indices]
        with seeded_random(seed):
            return [self.dataset[i] for i in indices]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)


class EpochBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Base of the batch samplers: subclasses list all batches of an epoch
    (:meth:`epoch_batches`); this class shards them, follows ``set_epoch`` (called by Lightning)
    and skips the batches a resumed run already trained."""

    def __init__(self, shuffle: bool = True, seed: int = 0):
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self._skip = 0
        # Lightning calls set_epoch on ``loader.batch_sampler.sampler``, not on the batch sampler
        self.sampler = self

    def epoch_batches(self, generator: torch.Generator) -> list[list[int]]:
        """Every batch of the current epoch (all ranks), drawing randomness from ``generator``."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        """Make the next iteration the rest of ``epoch``, from batch ``batches_done`` of this
        rank's share on."""
        self.epoch = epoch
        self._skip = batches_done

    def _rank_batches(self) -> list[list[int]]:
        batches = self.epoch_batches(torch.Generator().manual_seed(self.seed + self.epoch))
        rank, world = rank_and_world()
        if world == 1 or not batches:
            return batches
        per_rank = math.ceil(len(batches) / world)
        padded = [batches[i % len(batches)] for i in range(per_rank * world)]
        return padded[rank::world]

    def __iter__(self) -> Iterator[SeededBatch]:
        skip, self._skip = self._skip, 0
        rank, _ = rank_and_world()
        batches = self._rank_batches()
        for position in range(skip, len(batches)):
            seed = hash((self.seed, self.epoch, position, rank)) % 2**63
            yield SeededBatch(batches[position], seed)

    def __len__(self) -> int:
        """Batches of a whole epoch on this rank (a resumed epoch counts the skipped ones too, as
        Lightning's batch index does)."""
        return len(self._rank_batches())


class ShuffledBatchSampler(EpochBatchSampler):
    """Fixed-size batches of ``range(num_items)``, reshuffled each epoch (``shuffle=False``: in
    order); the last batch may be smaller."""

    def __init__(self, num_items: int, batch_size: int, shuffle: bool = True, seed: int = 0):
        super().__init__(shuffle=shuffle, seed=seed)
        self.num_items = num_items
        self.batch_size = batch_size

    def epoch_batches(self, generator: torch.Generator) -> list[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.num_items, generator=generator).tolist()
        else:
            order = list(range(self.num_items))
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]


class DurationBucketBatchSampler(EpochBatchSampler):
    """Yields batches of indices whose padded size ``len(batch) * max(duration)`` stays under
    ``max_batch_duration`` (seconds of audio, or any length unit), so long utterances come in
    small batches and short ones in large batches.

    Items are sorted by length inside shuffled windows of ``bucket_size`` items and cut into
    batches once (from ``seed``); each epoch shuffles the order of those batches, as ESPnet's
    batch bins do. The batches themselves stay fixed because Lightning counts an epoch's batches
    once, when training starts, and validates after that many: an epoch that drew one batch
    fewer would skip its validation (and early stopping would count the stale value).
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
        super().__init__(shuffle=shuffle, seed=seed)
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
        self._batches: list[list[int]] | None = None

    def epoch_batches(self, generator: torch.Generator) -> list[list[int]]:
        if self._batches is None:
            self._batches = self._all_batches(torch.Generator().manual_seed(self.seed))
        batches = self._batches
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return batches

    def _all_batches(self, generator: torch.Generator) -> list[list[int]]:
        if self.shuffle:
            order = torch.randperm(len(self.durations), generator=generator).tolist()
        else:
            order = list(range(len(self.durations)))
        batches = []
        for start in range(0, len(order), self.bucket_size):
            bucket = sorted(order[start : start + self.bucket_size], key=self.durations.__getitem__)
            batches.extend(self._cut(bucket))
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


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
