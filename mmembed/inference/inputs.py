"""What ``mmembed-predict`` is given: files, folders and glob patterns, expanded in order."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


class InputError(ValueError):
    """One input that cannot be used; the message names it and says why."""


def expand_inputs(specs: Iterable[str], extensions: tuple[str, ...]) -> list[str]:
    """Files as given, folders as their files with ``extensions`` (recursively, sorted), glob
    patterns as their sorted matches. A spec that names no file (a missing path, an empty
    folder, a pattern matching nothing) is kept as given, so that it is reported in its place
    instead of vanishing."""
    expanded: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(
                str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions
            )
            expanded += files or [spec]
        elif not path.exists() and glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            expanded += [m for m in matches if Path(m).is_file()] or [spec]
        else:
            expanded.append(spec)
    return expanded
