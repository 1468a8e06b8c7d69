"""Sampling that caps how often a group of near-identical items is seen per epoch.

Small real data sets are lumpy: many near-identical photos of one object, or one caption
repeated for dozens of images. Trained on every item every epoch, a captioner learns that the
largest family's caption is a safe answer for anything and collapses onto it. Capping each
group at ``cap`` items an epoch (a fresh random choice every epoch, so over the run every item
is still seen) evens out what the model is rewarded for.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterator, Sequence

import torch
from PIL import Image

from mmembed.data.sampling import rank_and_world


class GroupCappedSampler(torch.utils.data.Sampler[int]):
    """Indices of at most ``cap`` items per group each epoch, shuffled; under DDP every rank
    takes an equal share (the index list is padded by repeating its start).

    Args:
        groups: the group key of every item (items with equal keys form a group).
        cap: items of one group per epoch.
        seed: with the epoch (``set_epoch``, called by Lightning), seeds the choice and order.
    """

    def __init__(self, groups: Sequence[Hashable], cap: int, seed: int = 0):
        if cap < 1:
            raise ValueError(f"the cap on items per group must be at least 1, got {cap}")
        members: dict[Hashable, list[int]] = defaultdict(list)
        for index, key in enumerate(groups):
            members[key].append(index)
        self.members = list(members.values())
        self.cap = cap
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_groups(self) -> int:
        return len(self.members)

    def _epoch_indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        chosen = []
        for members in self.members:
            order = torch.randperm(len(members), generator=generator)[: self.cap]
            chosen += [members[i] for i in order.tolist()]
        return [chosen[i] for i in torch.randperm(len(chosen), generator=generator).tolist()]

    def __iter__(self) -> Iterator[int]:
        indices = self._epoch_indices()
        rank, world = rank_and_world()
        if world == 1:
            return iter(indices)
        per_rank = math.ceil(len(indices) / world)
        padded = [indices[i % len(indices)] for i in range(per_rank * world)]
        return iter(padded[rank::world])

    def __len__(self) -> int:
        total = sum(min(len(members), self.cap) for members in self.members)
        _, world = rank_and_world()
        return math.ceil(total / world)


def average_hash(path, size: int = 8) -> int:
    """A perceptual hash of an image: its ``size`` x ``size`` greyscale thumbnail thresholded at
    its mean. Near-identical images (re-encodings, small shifts) share it."""
    with Image.open(path) as image:
        pixels = torch.tensor(list(image.convert("L").resize((size, size)).getdata()))
    bits = (pixels > pixels.float().mean()).tolist()
    return sum(bit << i for i, bit in enumerate(bits))
