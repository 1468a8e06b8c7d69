"""Sampling that caps how often a group of near-identical items is seen per epoch.

Small real data sets are lumpy: many near-identical photos of one object, or one caption
repeated for dozens of images. Trained on every item every epoch, a captioner learns that the
largest family's caption is a safe answer for anything and collapses onto it. Capping each
group at ``cap`` items an epoch (a fresh random choice every epoch, so over the run every item
is still seen) evens out what the model is rewarded for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import torch
from PIL import Image

from mmembed.data.sampling import EpochBatchSampler


class GroupCappedBatchSampler(EpochBatchSampler):
    """Batches of ``batch_size`` items drawn from at most ``cap`` items per group each epoch,
    shuffled; sharded across ranks and resumable mid-epoch like every
    :class:`~mmembed.data.sampling.EpochBatchSampler`.

    Args:
        groups: the group key of every item (items with equal keys form a group).
        cap: items of one group per epoch.
        batch_size: items per batch (the last one may be smaller).
        shuffle: a fresh choice and order every epoch; False keeps each group's first ``cap``
            items in index order (``overfit_batches``: the same batches every epoch).
        seed: with the epoch (``set_epoch``, called by Lightning), seeds the choice and order.
    """

    def __init__(
        self,
        groups: Sequence[Hashable],
        cap: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
    ):
        super().__init__(shuffle=shuffle, seed=seed)
        if cap < 1:
            raise ValueError(f"the cap on items per group must be at least 1, got {cap}")
        members: dict[Hashable, list[int]] = defaultdict(list)
        for index, key in enumerate(groups):
            members[key].append(index)
        self.members = list(members.values())
        self.cap = cap
        self.batch_size = batch_size

    @property
    def num_groups(self) -> int:
        return len(self.members)

    @property
    def num_items(self) -> int:
        """Items an epoch (all ranks)."""
        return sum(min(len(members), self.cap) for members in self.members)

    def epoch_batches(self, generator: torch.Generator) -> list[list[int]]:
        if not self.shuffle:
            chosen = sorted(index for members in self.members for index in members[: self.cap])
        else:
            chosen = []
            for members in self.members:
                order = torch.randperm(len(members), generator=generator)[: self.cap]
                chosen += [members[i] for i in order.tolist()]
            chosen = [chosen[i] for i in torch.randperm(len(chosen), generator=generator).tolist()]
        size = self.batch_size
        return [chosen[i : i + size] for i in range(0, len(chosen), size)]


def average_hash(path, size: int = 8) -> int:
    """A perceptual hash of an image: its ``size`` x ``size`` greyscale thumbnail thresholded at
    its mean. Near-identical images (re-encodings, small shifts) share it."""
    with Image.open(path) as image:
        pixels = torch.tensor(list(image.convert("L").resize((size, size)).getdata()))
    bits = (pixels > pixels.float().mean()).tolist()
    return sum(bit << i for i, bit in enumerate(bits))
