"""A resumed run keeps the limits of its own command line.

Lightning restores ``EarlyStopping.patience`` and the ``Timer``'s elapsed time from the
checkpoint, so ``trainer.max_time=...`` or a new ``patience`` given to a resumed run were
ignored (and a requeued job inherited a spent time budget). Here ``patience`` is the configured
one and ``max_time`` is this run's own wall-time budget; the progress counters (epochs without
improvement, best score) still come from the checkpoint.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, Timer


class CommandLineLimits(L.Callback):
    def __init__(self) -> None:
        self._patience: dict[int, int] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # setup runs before the checkpoint is restored: these are the configured values
        self._patience = {
            id(callback): callback.patience
            for callback in trainer.callbacks
            if isinstance(callback, EarlyStopping)
        }

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for callback in trainer.callbacks:
            if isinstance(callback, EarlyStopping) and id(callback) in self._patience:
                callback.patience = self._patience[id(callback)]
            elif isinstance(callback, Timer):
                callback.load_state_dict({})  # no elapsed time: the budget starts now
