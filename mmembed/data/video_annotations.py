"""Which videos belong to a split, and their labels: a ``path,label`` CSV or class folders.

Two layouts:

- CSV (Kinetics style): a header naming at least ``path`` and ``label`` (extra columns are
  ignored), one video per row; ``path`` is absolute or relative to the CSV's folder.
- Folders (UCF101 style): ``root/<class>/<video>``; the class name is the folder name with
  underscores turned into spaces. Files whose extension is not a video container are ignored.

Structural problems (a malformed row, an unknown label, a file that does not exist) fail at
once naming the file and line: they mean the annotation is wrong, and training on the rest
would silently drop data. Files that exist but cannot be decoded are the index pass's job
(:func:`mmembed.data.video_io.probe_video`), which skips them with a warning.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from mmembed.data.text_files import read_text

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ogv", ".3gp", ".flv"}
)
REQUIRED_COLUMNS = ("path", "label")


class VideoAnnotationError(ValueError):
    """An annotation that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class VideoEntry:
    path: Path
    label: str
    where: str  # "file.csv:12" or the video's own path, for error messages


def folder_class_name(folder: str) -> str:
    return folder.replace("_", " ")


def read_video_csv(csv_path: str | PathLike) -> list[VideoEntry]:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"annotation file not found: {csv_path}")
    entries = []
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    text = read_text(csv_path, VideoAnnotationError, encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    # line_num counts physical lines, so numbers stay right after blank lines.
    rows = ((reader.line_num, row) for row in reader if row)
    header_line, header = next(rows, (1, []))
    columns = _column_positions(header, csv_path, header_line)
    for number, row in rows:
        where = f"{csv_path}:{number}"
        if len(row) != len(header):
            raise VideoAnnotationError(
                f"{where}: expected {len(header)} columns ({','.join(header)}), "
                f"got {len(row)}: {','.join(row)!r}"
            )
        path, label = (row[columns[name]].strip() for name in REQUIRED_COLUMNS)
        if not path or not label:
            raise VideoAnnotationError(f"{where}: empty path or label")
        video = Path(path) if Path(path).is_absolute() else csv_path.parent / path
        if not video.is_file():
            raise FileNotFoundError(f"{where}: video not found: {video}")
        entries.append(VideoEntry(video, label, where))
    return entries


def _column_positions(header: list[str], csv_path: Path, line: int) -> dict[str, int]:
    names = [name.strip().lower() for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise VideoAnnotationError(
            f"{csv_path}:{line}: header must name the columns {','.join(REQUIRED_COLUMNS)} "
            f"(missing {missing}), got {','.join(header)!r}"
        )
    return {name: names.index(name) for name in REQUIRED_COLUMNS}


def scan_class_folders(root: str | PathLike) -> list[VideoEntry]:
    """Every video file under ``root/<class>/`` (sub-folders of a class folder included)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    entries = []
    for folder in _class_folders(root):
        label = folder_class_name(folder.name)
        for video in sorted(folder.rglob("*")):
            if video.suffix.lower() in VIDEO_EXTENSIONS and video.is_file():
                entries.append(VideoEntry(video, label, str(video)))
    return entries


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_class_names(root: str | PathLike) -> list[str]:
    """Class names of a folder layout, in sorted folder order (the label indices)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    names = [folder_class_name(folder.name) for folder in _class_folders(root)]
    if not names:
        raise VideoAnnotationError(f"{root}: no class folders")
    return names


def read_class_list(path: str | PathLike) -> list[str]:
    """One class name per line (blank lines ignored); the line order gives the label indices."""
    path = Path(path)
    names = [line.strip() for line in read_text(path, VideoAnnotationError).splitlines()]
    names = [name for name in names if name]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise VideoAnnotationError(f"{path}: duplicate class names {duplicates}")
    if not names:
        raise VideoAnnotationError(f"{path}: no class names")
    return names


def label_indices(entries: Sequence[VideoEntry], class_names: Sequence[str]) -> list[int]:
    index_of = {name: index for index, name in enumerate(class_names)}
    indices = []
    for entry in entries:
        if entry.label not in index_of:
            raise VideoAnnotationError(
                f"{entry.where}: unknown label {entry.label!r} (the {len(class_names)} classes "
                f"are {list(class_names)[:10]}{' ...' if len(class_names) > 10 else ''})"
            )
        indices.append(index_of[entry.label])
    return indices
