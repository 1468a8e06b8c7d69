"""Checkpoints written atomically on the checkpoint's own filesystem.

Lightning 2.6's save serialises to memory, writes a temporary file in ``$TMPDIR`` and moves it:
across filesystems (usual on clusters) the move is a copy, so a kill mid-copy truncates
``last.ckpt``, and each kill leaves a checkpoint-sized orphan in ``$TMPDIR``. Here the temporary
file sits beside its target (``.<name>.<pid>.tmp``), is fsynced, then renamed over the target
(atomic on POSIX) and the folder fsynced: at every instant the target is the old or the new
checkpoint, whole.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder``; returns them."""
    stale = sorted(Path(folder).glob(f".*.ckpt.*{TEMP_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted checkpoint write", path)
    return stale


def _fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic: temp file in the same folder, fsync,
    rename. Remote URLs (``s3://...``) keep Lightning's own save."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(
                f"`storage_options` ({storage_options!r}) is not supported by {type(self).__name__}"
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = temporary_path(path)
        try:
            with open(temporary, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_folder(path.parent)
