"""The folder contract shared by the generated corpora: a ``corpus.json`` naming the generator
marks a complete corpus; builds happen in a staging folder renamed into place at the end; a
folder that is not ours is never deleted."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

INFO_FILE = "corpus.json"


def read_corpus_info(out_dir: str | os.PathLike, generator: str) -> dict[str, Any] | None:
    """The ``corpus.json`` written by ``generator`` in ``out_dir``, or None if there is none."""
    try:
        info = json.loads((Path(out_dir) / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("generator") == generator else None


def check_is_generated(out_dir: Path, generator: str) -> None:
    if out_dir.is_dir() and any(out_dir.iterdir()) and read_corpus_info(out_dir, generator) is None:
        raise FileExistsError(
            f"{out_dir} exists and holds no corpus.json from this generator; refusing to "
            "replace it (choose another out_dir or remove it)"
        )


def replace_with_staging(staging: Path, out_dir: Path, generator: str) -> None:
    if out_dir.exists():
        check_is_generated(out_dir, generator)
        shutil.rmtree(out_dir)
    try:
        staging.rename(out_dir)
    except OSError:
        # Another process (e.g. a second DDP node) finished the same corpus first.
        if read_corpus_info(out_dir, generator) is None:
            raise
