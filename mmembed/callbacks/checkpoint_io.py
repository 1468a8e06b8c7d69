"""Checkpoints written atomically, and a failed write that names the checkpoint."""

from __future__ import annotations

import io
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from mmembed.artifacts import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` whose local writes go through
    :func:`~mmembed.artifacts.write_atomically`: ``last.ckpt`` is always a whole checkpoint,
    and a full disk raises an ``OSError`` naming the checkpoint (Lightning's own error names no
    file). Remote paths (``s3://...``) are left to Lightning."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path) or storage_options is not None:
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomically(path, buffer.getbuffer())
