"""What a run's final report says beyond its scores: why training stopped, what the data left
out, and what of its text the model cannot represent; and ``metrics.json``, which holds the
same facts for scripts."""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any

from mmembed.artifacts import write_atomically
from mmembed.callbacks.stopping import TrainingStop
from mmembed.data.skips import LISTED_IN_WARNING, counts, summarize

# how many skipped items the final report names per split (the warnings name the rest)
NAMED_IN_REPORT = LISTED_IN_WARNING


def data_report(datamodule: Any) -> list[str]:
    """Report lines on the data: skipped items per split (kinds counted, the first ones
    named), then each split's text the tokenizer cannot represent."""
    lines = []
    skipped = summarize(getattr(datamodule, "skipped", {}), named=NAMED_IN_REPORT)
    if skipped:
        lines += ["items left out of the data (the warnings above name each one):"]
        lines += [f"  {line}" for line in skipped]
    coverage = {
        split: found for split, found in getattr(datamodule, "text_coverage", {}).items() if found
    }
    if coverage:
        lines += ["text the model cannot represent (normalisation keeps a-z, digits, '):"]
        lines += [f"  {split}: {found.summary()}" for split, found in coverage.items()]
    return lines


def write_metrics(
    path: str | PathLike,
    metrics: dict[str, float],
    stop: TrainingStop | None = None,
    datamodule: Any = None,
) -> Path:
    """``metrics.json``: the final metrics (name -> number) and, under ``"run"``, why training
    stopped; under ``"data"``, the skipped items per split and kind and the text the model
    cannot represent. Written atomically."""
    content: dict[str, Any] = dict(metrics)
    if stop is not None:
        content["run"] = stop.as_dict()
    if datamodule is not None:
        content["data"] = {
            "skipped": {
                split: counts(items)
                for split, items in getattr(datamodule, "skipped", {}).items()
                if items
            },
            "unrepresented_text": {
                split: found.as_dict()
                for split, found in getattr(datamodule, "text_coverage", {}).items()
                if found
            },
        }
    return write_atomically(path, json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False))
