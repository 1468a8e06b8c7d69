"""A resumed run keeps the limits of its own command line.

Lightning restores ``EarlyStopping.patience`` and the ``Timer``'s elapsed time from the
checkpoint, so ``trainer.max_time=...`` or a new ``patience`` given to a resumed run were
ignored (and a requeued job inherited a spent time budget and stopped at once). Here
``patience`` is the configured one and ``max_time`` is this run's own wall-time budget; the
progress counters (epochs without improvement, best score) still come from the checkpoint.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, Timer


def _restore_progress_only(callback: L.Callback, restore: Any, state_dict: dict) -> None:
    if isinstance(callback, Timer):
        return  # the budget starts with this run
    patience = callback.patience
    restore(state_dict)
    callback.patience = patience


class CommandLineLimits(L.Callback):
    """Makes the trainer's ``EarlyStopping`` and ``Timer`` callbacks restore progress, not
    limits (set up before the checkpoint is restored, which happens after ``setup``)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for callback in trainer.callbacks:
            if isinstance(callback, EarlyStopping | Timer) and "load_state_dict" not in vars(
                callback
            ):
                restore = callback.load_state_dict
                callback.load_state_dict = lambda state, c=callback, r=restore: (
                    _restore_progress_only(c, r, state)
                )
