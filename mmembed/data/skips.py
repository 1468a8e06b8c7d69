"""Counted skips: items a data set leaves out (an unreadable file, an empty transcript, a
video too short for a clip), reported once per source with counts by kind and each item named,
and kept for the run's final report. ``strict`` data modules raise on the first instead.

Most skips are found when a split is indexed (headers only). A file whose header is fine but
whose samples do not decode is found when it is loaded, often in a DataLoader worker process:
the dataset then returns a :class:`SkippedItem` in place of the item, the collate leaves it out
of the batch and carries it under :data:`SKIPPED`, and the data module records it in the main
process (:meth:`~mmembed.data.datamodule.TaskDataModule.on_before_batch_transfer`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Items named in a warning or in the final report (per split); the rest are counted.
LISTED_IN_WARNING = 20

# What every mmembed batch holds besides its tensors: the file of each item (in batch order),
# and the items that failed to load and were left out. A batch whose items all failed holds only
# these two (an empty ``PATHS``).
PATHS = "paths"
SKIPPED = "skipped"


class SkippedItemsWarning(UserWarning):
    """Items were skipped; the message counts them by kind and names each (up to a limit)."""


class LoadSkipWarning(SkippedItemsWarning):
    """Items failed when they were loaded (their headers were fine) and were left out."""


@dataclass(frozen=True)
class SkippedItem:
    """One item left out: ``where`` names it (``manifest.jsonl:12: audio/x.wav``, a file),
    ``kind`` is the short category counted in reports, ``reason`` the full explanation."""

    where: str
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def warn_skipped(
    source: object,
    skipped: Sequence[SkippedItem],
    total: int,
    noun: str = "items",
    category: type[Warning] = SkippedItemsWarning,
    stacklevel: int = 3,
) -> None:
    """One warning for all the items ``source`` skipped (nothing when there are none)."""
    if not skipped:
        return
    listing = "\n  ".join(str(item) for item in skipped[:LISTED_IN_WARNING])
    more = len(skipped) - LISTED_IN_WARNING
    warnings.warn(
        f"{source}: skipped {len(skipped)} of {total} {noun} ({counts(skipped)}):\n  {listing}"
        + (f"\n  ... and {more} more" if more > 0 else ""),
        category,
        stacklevel=stacklevel,
    )


def without_failed(items: Sequence[Any]) -> tuple[list[Any], list[SkippedItem]]:
    """The items that loaded, and the :class:`SkippedItem` s returned for those that did not."""
    failed = [item for item in items if isinstance(item, SkippedItem)]
    return [item for item in items if not isinstance(item, SkippedItem)], failed


def empty_batch(skipped: list[SkippedItem]) -> dict[str, list]:
    """The batch of a collate whose items all failed to load (tasks step over it)."""
    return {PATHS: [], SKIPPED: skipped}


def counts(skipped: Sequence[SkippedItem]) -> dict[str, int]:
    """Skipped items per kind, in order of first appearance."""
    return dict(Counter(item.kind for item in skipped))


def summarize(skipped: dict[str, Sequence[SkippedItem]], named: int = 0) -> list[str]:
    """Report lines, one per split with skips: ``train: 3 skipped ({'empty audio': 3})``,
    each followed by the first ``named`` items (indented) and a count of the rest."""
    lines = []
    for split, items in skipped.items():
        if not items:
            continue
        lines.append(f"{split}: {len(items)} skipped ({counts(items)})")
        lines += [f"  {item}" for item in items[:named]]
        if named and len(items) > named:
            lines.append(f"  ... and {len(items) - named} more")
    return lines
