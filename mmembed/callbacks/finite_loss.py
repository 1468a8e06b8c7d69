"""Stop a run the moment its training loss stops being a number."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from mmembed.data.skips import PATHS


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and the files."""


class FiniteLossCheck(L.Callback):
    """Raises :class:`NonFiniteLossError` the first time a training loss is NaN or infinite,
    before its backward pass, so no weight, optimizer state or checkpoint ever holds the NaN.
    The message names the global step, the epoch and batch, and the files of the batch (from
    its ``paths``). It costs one host sync per step, unlike ``detect_anomaly``, which is too
    slow to leave on."""

    def __init__(self) -> None:
        self._paths: list[str] = []
        self._batch_idx = 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._paths = list(batch.get(PATHS, ())) if isinstance(batch, dict) else []
        self._batch_idx = batch_idx

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        if bool(torch.isfinite(loss.detach()).all()):
            return
        files = "\n  ".join(self._paths) if self._paths else "(the batch names no files)"
        raise NonFiniteLossError(
            f"training loss is {loss.detach().float().cpu().tolist()} at global step "
            f"{trainer.global_step} (epoch {trainer.current_epoch}, batch {self._batch_idx}); "
            "stopped before its backward pass, so the weights are those of the step before. "
            "Check the batch's files, the learning rate and the precision. The batch's "
            f"{len(self._paths)} files:\n  {files}"
        )
