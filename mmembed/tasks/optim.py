"""Optimizer + LR schedule wiring shared by the tasks (configured as Hydra partials)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import torch


def configure_optimizers(
    module: torch.nn.Module,
    optimizer: Callable[..., torch.optim.Optimizer],
    scheduler: Callable[..., Any] | None,
    total_steps: int,
    interval: str = "step",
    monitor: str | None = None,
) -> dict[str, Any]:
    """Builds ``optimizer(params)`` and, if given, ``scheduler(optimizer)``.

    Schedulers that need the run length (``OneCycleLR``'s ``total_steps``) get it from the
    trainer's estimate, so a config never hard-codes a step count that breaks when the data,
    batch size or number of devices changes.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    built = optimizer(params)
    if scheduler is None:
        return {"optimizer": built}
    kwargs = {}
    if "total_steps" in inspect.signature(scheduler).parameters:
        kwargs["total_steps"] = max(int(total_steps), 1)
    config: dict[str, Any] = {"scheduler": scheduler(built, **kwargs), "interval": interval}
    if monitor:
        config["monitor"] = monitor
    return {"optimizer": built, "lr_scheduler": config}


def extend_schedules_to_run_length(trainer) -> None:
    """After resuming with a longer run (more epochs), a restored ``OneCycleLR`` still holds the
    old ``total_steps`` and torch would raise mid-epoch; stretch it to the new length instead."""
    total = int(trainer.estimated_stepping_batches)
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if getattr(scheduler, "total_steps", None) is not None and scheduler.total_steps < total:
            warnings.warn(
                f"{type(scheduler).__name__}: extending total_steps from {scheduler.total_steps} "
                f"to {total} to cover the resumed run",
                stacklevel=2,
            )
            for phase in getattr(scheduler, "_schedule_phases", ()):  # OneCycleLR's phase ends
                phase["end_step"] = (phase["end_step"] + 1) * total / scheduler.total_steps - 1
            scheduler.total_steps = total
