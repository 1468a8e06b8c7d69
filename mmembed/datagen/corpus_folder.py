"""The folder contract every generated corpus follows.

- A complete corpus holds ``corpus.json``: the generator's module name, the spec it was built
  from (its ``version`` included, bumped whenever the same spec would give other data), the
  counts per split and whatever else the generator records.
- A corpus is built in a hidden staging folder beside its target and moved into place at the
  end (the old corpus is moved aside first, then deleted), so an interrupted build never
  leaves a folder that looks complete, and readers never see half old, half new data.
- A folder that holds anything but a corpus of the same generator is never replaced.
- ``ensure`` functions rebuild only when the spec differs: :func:`is_current`.
- The processes of one machine that ask for the same corpus (the ranks of a DDP job) take the
  lock at :func:`lock_path`, outside the data folder: a corpus built elsewhere may sit in a
  folder this run cannot write to, and reading it must not need to.
- A build that fails (a full disk) names the folder it was writing in its error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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


def is_current(
    out_dir: str | os.PathLike, generator: str, spec: Mapping[str, Any], files: Sequence[str] = ()
) -> bool:
    """Whether ``out_dir`` holds a complete corpus of ``generator`` built from ``spec`` (and
    every one of ``files``)."""
    info = read_corpus_info(out_dir, generator)
    if info is None or info.get("spec") != dict(spec):
        return False
    return all((Path(out_dir) / name).is_file() for name in files)


def check_is_generated(out_dir: str | os.PathLike, generator: str) -> None:
    """Refuse to replace a folder that is not empty and holds no corpus of ``generator``."""
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and read_corpus_info(out_dir, generator) is None:
        raise FileExistsError(
            f"{out_dir} exists and holds no {INFO_FILE} from {generator}; refusing to replace it "
            "with a generated corpus (to train on your own data there, set corpus=none; "
            "otherwise choose another folder or remove it)"
        )


def lock_path(out_dir: str | os.PathLike) -> Path:
    """The lock file of ``out_dir``'s corpus step: in this user's lock folder in the machine's
    temporary directory (one lock per machine, like the build), named after the corpus folder
    and a hash of its absolute path; nothing is written into or beside the data folder."""
    resolved = Path(out_dir).resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"mmembed-locks-{os.getuid()}"
    return folder / f"{resolved.name}-{digest}.lock"


def _sibling(path: Path, role: str) -> Path:
    """A hidden, per-process work folder next to ``path``, cleared of leftovers."""
    sibling = path.with_name(f".{path.name}.{role}-{os.getpid()}")
    shutil.rmtree(sibling, ignore_errors=True)
    return sibling


@contextmanager
def staging(out_dir: str | os.PathLike, generator: str) -> Iterator[Path]:
    """Build a corpus in the yielded (empty) folder; when the block succeeds it replaces
    ``out_dir``, when it fails it is deleted and ``out_dir`` is left as it was."""
    out_dir = Path(out_dir)
    check_is_generated(out_dir, generator)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    folder = _sibling(out_dir, "partial")
    folder.mkdir()
    try:
        yield folder
        if not (folder / INFO_FILE).is_file():
            raise RuntimeError(f"{generator} wrote no {INFO_FILE}: the corpus is incomplete")
        _replace(folder, out_dir, generator)
    except Exception as err:
        # Writers' own errors rarely name the file (soundfile, a full disk's "[Errno 28]").
        free = shutil.disk_usage(folder.parent).free
        err.add_note(
            f"while building the {generator} corpus for {out_dir} in {folder} "
            f"({free / 2**20:.0f} MiB free on that disk)"
        )
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _replace(folder: Path, out_dir: Path, generator: str) -> None:
    old = None
    if out_dir.exists():
        check_is_generated(out_dir, generator)
        old = _sibling(out_dir, "old")
        out_dir.rename(old)
    try:
        folder.rename(out_dir)
    except OSError:
        # Another process (e.g. a second DDP node) finished the same corpus first.
        if read_corpus_info(out_dir, generator) is None:
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_info(
    folder: Path,
    generator: str,
    spec: Mapping[str, Any],
    counts: Mapping[str, Mapping[str, float]],
    **extra: Any,
) -> None:
    """Write ``corpus.json``: ``counts`` maps each split to named figures, e.g.
    ``{"train": {"utterances": 4000, "hours": 2.2}}`` (``mmembed-data`` prints them)."""
    info = {"generator": generator, "spec": dict(spec), "counts": counts, **extra}
    (folder / INFO_FILE).write_text(
        json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def describe_counts(info: Mapping[str, Any]) -> list[str]:
    """``train: 4000 utterances, 2.2 hours``, one line per split of a ``corpus.json``."""
    lines = []
    for split, figures in (info.get("counts") or {}).items():
        if isinstance(figures, Mapping):
            text = ", ".join(f"{value:g} {name}" for name, value in figures.items())
        else:
            text = str(figures)
        lines.append(f"{split}: {text}")
    return lines


def split_sizes(count: int, fractions: Sequence[float]) -> list[int]:
    """Items per split for ``count`` items: largest-remainder rounding of ``fractions`` (which
    must sum to 1 or less; what is left over goes to the first split), with at least one item
    in every split that asks for some when there are enough items for that."""
    if any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"split fractions must be >= 0 and sum to at most 1, got {fractions}")
    wanted = [i for i, f in enumerate(fractions) if f > 0] if count >= len(fractions) else []
    exact = [f * count for f in fractions]
    sizes = [int(x) for x in exact]
    target = round(sum(exact))
    for i in sorted(range(len(sizes)), key=lambda i: sizes[i] - exact[i])[: target - sum(sizes)]:
        sizes[i] += 1
    sizes[0] += count - sum(sizes)
    for i in wanted:
        if sizes[i] == 0:
            sizes[i] = 1
            sizes[max(range(len(sizes)), key=sizes.__getitem__)] -= 1
    return sizes
