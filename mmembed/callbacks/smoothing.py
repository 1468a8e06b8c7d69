"""A smoothed copy of a validation metric, for early stopping and checkpoint selection on small
validation sets, where one lucky epoch decides the "best" checkpoint and noise ends runs early.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

# Callbacks that read the monitored metric when validation ends.
_READERS = (EarlyStopping, ModelCheckpoint)


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

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Checkpointing and early stopping read the monitored value in on_validation_end too:
        # run before them, so they see this validation's average, not the previous one.
        callbacks = trainer.callbacks
        readers = [i for i, c in enumerate(callbacks) if isinstance(c, _READERS)]
        if readers and callbacks.index(self) > readers[0]:
            callbacks.remove(self)
            callbacks.insert(readers[0], self)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not on_validation_epoch_end: tasks log epoch-level metrics (CIDEr over the whole
        # split) in their own on_validation_epoch_end, which Lightning runs after callbacks'.
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
        # self.log is not allowed here; this is what it would do for an epoch-level value
        trainer.callback_metrics[self.name] = smoothed
        for logger in trainer.loggers:
            logger.log_metrics({self.name: float(smoothed)}, step=trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = deque(state_dict.get("history", []), maxlen=self.window)
