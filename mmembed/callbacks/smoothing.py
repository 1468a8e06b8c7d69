"""A smoothed copy of a validation metric, for early stopping and checkpoint selection on small
validation sets, where one lucky epoch decides the "best" checkpoint and noise ends runs early.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import lightning as L
import torch


class SmoothedMetric(L.Callback):
    """Logs ``<metric>_smoothed``: the mean of ``metric`` over the last ``window`` validations.

    Monitor the smoothed name (``monitor.metric=val/video_top1_smoothed``) to let checkpointing
    and early stopping see the trend rather than one epoch's noise. The window is saved in
    checkpoints, so a resumed run continues the same average.
    """

    def __init__(self, metric: str, window: int = 3):
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.metric = metric
        self.window = window
        self.history: deque[float] = deque(maxlen=window)

    @property
    def name(self) -> str:
        return f"{self.metric}_smoothed"

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.metric)
        if value is None:
            raise KeyError(
                f"SmoothedMetric: {self.metric!r} was not logged this validation; logged: "
                f"{sorted(trainer.callback_metrics)}"
            )
        self.history.append(float(value))
        smoothed = torch.tensor(sum(self.history) / len(self.history))
        pl_module.log(self.name, smoothed, prog_bar=True)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = deque(state_dict.get("history", []), maxlen=self.window)
