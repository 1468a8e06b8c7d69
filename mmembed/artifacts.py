"""Reading and writing a run's artifacts (tokenizer, metrics, checkpoints) safely.

Writes are atomic: the data goes to a temporary file beside the target, which then replaces
it, so a reader (or a resumed run) sees the old file or the new one, never half of one. A write
that fails (a full disk, a quota, a read-only folder) raises an ``OSError`` that names the
file, which the bare error from ``write()`` does not. Checkpoints are read with
``weights_only=True`` (no unpickling of arbitrary objects), and a file that is not a checkpoint
fails naming it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint; the message names it."""


def write_atomically(path: str | PathLike, data: str | bytes | memoryview) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically; returns the path."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
    return path


# The errors of a write that found no room: a full disk, a file-size limit, a quota.
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


@contextlib.contextmanager
def naming_the_folder_on_full_disk(folder: str | PathLike) -> Iterator[None]:
    """Writes that mmembed does not make itself (loggers, Hydra, profilers) fail on a full disk
    with a bare ``[Errno 28]``: add a note naming the folder they write in and its free space."""
    try:
        yield
    except OSError as err:
        if err.errno in _NO_ROOM and not err.filename and "cannot write" not in str(err):
            folder = Path(folder)
            existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
            free = shutil.disk_usage(existing).free
            err.add_note(
                f"while writing in the run folder {folder} ({free / 2**20:.0f} MiB free on "
                "that disk): a logger, checkpoint or report file there could not be written"
            )
        raise


def load_checkpoint(path: str | PathLike) -> dict[str, Any]:
    """A checkpoint's dictionary, loaded on the CPU with ``weights_only=True``."""
    import torch  # here, so the text and data modules that write artifacts stay torch-free

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types: EOFError, UnpicklingError, ...
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {detail})"
        ) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint dictionary"
        )
    return checkpoint
