"""NeMo-style JSONL speech manifests: one ``{"audio_filepath", "text", "duration"}`` per line.

``audio_filepath`` is absolute or relative to the manifest's folder. Structural problems (a line
that is not JSON, a missing key, a wrong type) fail at once naming the file and line: they mean
the manifest is wrong, and training on the rest would silently drop data.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from mmembed.data.text_files import read_text

REQUIRED_KEYS = ("audio_filepath", "text", "duration")


class ManifestError(ValueError):
    """A manifest line that cannot be used (or a file that is not UTF-8); the message names the
    file and line."""


@dataclass(frozen=True)
class ManifestEntry:
    audio_path: Path
    text: str
    duration: float
    line: int


def read_manifest(path: str | PathLike) -> list[ManifestEntry]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    # newline=None: universal newlines, as a text-mode file would read them
    lines = io.StringIO(read_text(path, ManifestError), newline=None)
    return [
        _parse_line(raw, path, number) for number, raw in enumerate(lines, start=1) if raw.strip()
    ]


def _parse_line(raw: str, path: Path, number: int) -> ManifestEntry:
    where = f"{path}:{number}"
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: not valid JSON ({err.msg})") from err
    if not isinstance(record, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise ManifestError(f"{where}: missing key(s) {', '.join(missing)}")
    audio, text, duration = (record[key] for key in REQUIRED_KEYS)
    if not isinstance(audio, str) or not audio:
        raise ManifestError(f"{where}: audio_filepath must be a non-empty string")
    if not isinstance(text, str):
        raise ManifestError(f"{where}: text must be a string, got {type(text).__name__}")
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0:
        raise ManifestError(f"{where}: duration must be a non-negative number, got {duration!r}")
    audio_path = Path(audio)
    if not audio_path.is_absolute():
        audio_path = path.parent / audio_path
    return ManifestEntry(audio_path, text, float(duration), number)
