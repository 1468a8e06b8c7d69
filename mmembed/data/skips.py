"""Counted skips: items a data set leaves out (an unreadable file, an empty transcript, a
video too short for a clip), reported once per source with counts by kind and each item named,
and kept for the run's final report. ``strict`` data modules raise on the first instead."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

# Items named in a warning; the rest are counted.
LISTED_IN_WARNING = 20


class SkippedItemsWarning(UserWarning):
    """Items were skipped; the message counts them by kind and names each (up to a limit)."""


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
    counts = dict(Counter(item.kind for item in skipped))
    listing = "\n  ".join(str(item) for item in skipped[:LISTED_IN_WARNING])
    more = len(skipped) - LISTED_IN_WARNING
    warnings.warn(
        f"{source}: skipped {len(skipped)} of {total} {noun} ({counts}):\n  {listing}"
        + (f"\n  ... and {more} more" if more > 0 else ""),
        category,
        stacklevel=stacklevel,
    )


def summarize(skipped: dict[str, Sequence[SkippedItem]]) -> list[str]:
    """Report lines, one per split with skips: ``train: 3 skipped ({'empty audio': 3})``."""
    return [
        f"{split}: {len(items)} skipped ({dict(Counter(item.kind for item in items))})"
        for split, items in skipped.items()
        if items
    ]
