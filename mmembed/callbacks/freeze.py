"""Freeze parts of a model for the first epochs of a run, then train them at a lower learning
rate: the usual recipe for fine-tuning a pretrained encoder (or table) on a small data set.

Unlike Lightning's ``BaseFinetuning``, which adds the unfrozen parameters to the optimizer as a
new group mid-run (a group ``OneCycleLR`` and ``LambdaLR`` know nothing about), the frozen
modules are in the optimizer from the start, in their own parameter group at
``lr_factor`` times the learning rate, and the schedule covers them like every other group. While
frozen they get no gradient (AdamW and SGD skip parameters without one, weight decay included)
and stay in eval mode, so BatchNorm statistics and dropout stay those of the checkpoint.
Under DDP, use a strategy with ``find_unused_parameters=True`` (frozen parameters get no
gradient in the first epochs).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
from torch import nn


class FreezeSchedule(L.Callback):
    """Keep ``modules`` frozen for the first ``epochs`` epochs, then train them.

    Args:
        modules: attribute paths of the task's modules (``"encoder"``, ``"embedding"``,
            ``"decoder.layers"``).
        epochs: epochs to keep them frozen (0: never frozen, only the learning rate factor).
        lr_factor: their learning rate relative to the rest of the model, for the whole run.
    """

    def __init__(self, modules: Sequence[str], epochs: int = 1, lr_factor: float = 0.1):
        if not modules:
            raise ValueError("FreezeSchedule needs at least one module name")
        if epochs < 0 or lr_factor <= 0:
            raise ValueError(f"need epochs >= 0 and lr_factor > 0, got {epochs} and {lr_factor}")
        self.modules = list(modules)
        self.epochs = epochs
        self.lr_factor = lr_factor

    def _module(self, task: nn.Module, path: str) -> nn.Module:
        module = task
        for part in path.split("."):
            if not hasattr(module, part):
                raise ValueError(f"FreezeSchedule: {type(task).__name__} has no module {path!r}")
            module = getattr(module, part)
        return module

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for path in self.modules:
            self._module(pl_module, path)  # a typo fails before the first step
        # read by TokenTableTask.configure_optimizers: one parameter group per module
        # (merged: several schedules, e.g. locked towers and a slower decoder, share the dict)
        pl_module.lr_factors = {
            **getattr(pl_module, "lr_factors", {}),
            **{path: self.lr_factor for path in self.modules},
        }

    def frozen(self, epoch: int) -> bool:
        return epoch < self.epochs

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning skips on_train_epoch_start for an epoch resumed mid-way: apply it here too
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frozen = self.frozen(trainer.current_epoch)
        for path in self.modules:
            module = self._module(pl_module, path)
            module.requires_grad_(not frozen)
            if frozen:
                module.eval()
            else:
                module.train()
