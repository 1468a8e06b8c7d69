"""What of a data set's text a tokenizer cannot represent.

Two things are lost silently otherwise: letters and digits that text normalisation drops (other
scripts, "ß"; see :func:`~mmembed.text.tokenizers.dropped_characters`), and characters that
survive it but are missing from the tokenizer's vocabulary (a digit that never occurred in the
training texts), which encode as ``<unk>``. The data modules check each split once the
tokenizer exists and report both, with counts and examples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mmembed.text.tokenizers import dropped_characters, normalize_text

# Affected texts quoted in a report.
EXAMPLES = 3


class UnrepresentedTextWarning(UserWarning):
    """A split holds characters its tokenizer cannot represent (the message counts them)."""


@dataclass
class TextCoverage:
    """The characters of one split's texts that the model never sees.

    ``dropped``: letters and digits removed by normalisation; ``unknown``: characters that
    encode as ``<unk>``; each maps a character to its occurrences. ``examples`` quotes the
    first affected texts (``where: text``).
    """

    texts: int = 0
    affected: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.dropped or self.unknown)

    def summary(self) -> str:
        """``3 of 200 texts hold characters the model cannot represent: ...``."""
        parts = []
        if self.dropped:
            parts.append(
                f"{sum(self.dropped.values())} dropped by text normalisation "
                f"{_most_common(self.dropped)}"
            )
        if self.unknown:
            parts.append(
                f"{sum(self.unknown.values())} outside the tokenizer's vocabulary, read as <unk> "
                f"{_most_common(self.unknown)}"
            )
        return (
            f"{self.affected} of {self.texts} texts hold characters the model cannot "
            f"represent: {'; '.join(parts)}"
        )

    def describe(self) -> str:
        """The summary and the quoted examples, one per line."""
        return "\n  ".join([self.summary(), *(f"e.g. {example}" for example in self.examples)])

    def as_dict(self) -> dict[str, Any]:
        return {
            "texts": self.texts,
            "affected": self.affected,
            "dropped": dict(self.dropped),
            "unknown": dict(self.unknown),
        }


def text_coverage(items: Iterable[tuple[str, str]], tokenizer: Any) -> TextCoverage:
    """Check ``(where, raw text)`` items against ``tokenizer`` (one with ``encode`` and
    ``unk_id``; without ``unk_id`` only normalisation losses are counted)."""
    unk_id = getattr(tokenizer, "unk_id", None)
    known: dict[str, bool] = {}

    def is_unknown(ch: str) -> bool:
        if ch not in known:
            known[ch] = unk_id is not None and unk_id in tokenizer.encode(ch)
        return known[ch]

    coverage = TextCoverage()
    for where, text in items:
        coverage.texts += 1
        dropped = dropped_characters(text)
        unknown = [ch for ch in normalize_text(text) if ch != " " and is_unknown(ch)]
        if dropped or unknown:
            coverage.affected += 1
            coverage.dropped.update(dropped)
            coverage.unknown.update(unknown)
            if len(coverage.examples) < EXAMPLES:
                coverage.examples.append(f"{where}: {text!r}")
    return coverage


def _most_common(counts: Counter[str], shown: int = 10) -> str:
    listed = ", ".join(f"{ch!r}: {n}" for ch, n in counts.most_common(shown))
    more = len(counts) - shown
    return "{" + listed + (f", ... {more} more" if more > 0 else "") + "}"
