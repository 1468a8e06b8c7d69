"""Optimizer + LR schedule wiring shared by the tasks (configured as Hydra partials)."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch


def configure_optimizers(
    module: torch.nn.Module,
    optimizer: Callable[..., torch.optim.Optimizer],
    scheduler: Callable[..., Any] | None,
    total_steps: int,
    interval: str = "step",
    monitor: str | None = None,
    lr_factors: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Builds ``optimizer(params)`` and, if given, ``scheduler(optimizer)``.

    Schedulers that need the run length (``OneCycleLR``'s ``total_steps``) get it from the
    trainer's estimate, so a config never hard-codes a step count that breaks when the data,
    batch size or number of devices changes. A schedule that cannot be built for that length
    fails naming its settings and the step count.

    ``lr_factors`` maps submodule names (``"encoder"``) to a learning-rate multiplier: their
    parameters form their own groups at that fraction of the learning rate, and a scheduler's
    scalar ``max_lr`` (``OneCycleLR``) is scaled per group the same way.
    """
    named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    factors = dict(lr_factors or {})
    groups: list[tuple[float, list]] = [(1.0, [])]
    by_prefix = {prefix: (factor, []) for prefix, factor in factors.items()}
    for name, param in named:
        prefix = next((p for p in by_prefix if name == p or name.startswith(p + ".")), None)
        (by_prefix[prefix][1] if prefix is not None else groups[0][1]).append(param)
    groups += [group for group in by_prefix.values() if group[1]]
    groups = [group for group in groups if group[1]]
    if len(groups) == 1 and groups[0][0] == 1.0:
        built = optimizer(groups[0][1])
    else:
        built = optimizer([{"params": params} for _, params in groups])
        for (factor, _), group in zip(groups, built.param_groups, strict=True):
            group["lr"] *= factor
    if scheduler is None:
        return {"optimizer": built}
    kwargs = {}
    parameters = inspect.signature(scheduler).parameters
    if "total_steps" in parameters:
        kwargs["total_steps"] = max(int(total_steps), 1)
    max_lr = getattr(scheduler, "keywords", {}).get("max_lr")
    if len(groups) > 1 and isinstance(max_lr, int | float):
        kwargs["max_lr"] = [max_lr * factor for factor, _ in groups]
    try:
        schedule = scheduler(built, **kwargs)
    except (ArithmeticError, ValueError) as err:
        raise ValueError(
            f"cannot build the learning-rate schedule {_describe(scheduler)} for a run of "
            f"{total_steps} optimizer steps ({type(err).__name__}: {err}); change the "
            "schedule's settings or the run length (trainer.max_epochs / max_steps)"
        ) from err
    config: dict[str, Any] = {"scheduler": schedule, "interval": interval}
    if monitor:
        config["monitor"] = monitor
    return {"optimizer": built, "lr_scheduler": config}


def _describe(factory: Callable[..., Any]) -> str:
    """``OneCycleLR(max_lr=0.003, pct_start=0.1)`` for a ``functools.partial`` (Hydra's)."""
    func = getattr(factory, "func", factory)
    settings = ", ".join(f"{k}={v!r}" for k, v in getattr(factory, "keywords", {}).items())
    return f"{getattr(func, '__name__', repr(func))}({settings})"


class OneCycleLR(torch.optim.lr_scheduler.OneCycleLR):
    """torch's ``OneCycleLR`` for any number of steps.

    torch divides by the length of each phase, so a phase of zero steps raises
    ``ZeroDivisionError``: the warm-up of a 10-step run with ``pct_start=0.1`` (the first step
    of the run), or the annealing of any run with ``pct_start=1.0`` (its last step). Such a
    phase is given one step instead (:func:`separate_phases`); every other run is unchanged.
    """

    def _initial_step(self) -> None:
        # torch's constructor takes the first step right after laying out the phases
        separate_phases(self)
        super()._initial_step()


def separate_phases(scheduler: torch.optim.lr_scheduler.OneCycleLR) -> None:
    """Give every zero-length phase of a one-cycle schedule one step."""
    start = 0.0
    for phase in scheduler._schedule_phases:
        if phase["end_step"] == start:
            phase["end_step"] = start + 1.0
        start = phase["end_step"]


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
            phases = getattr(scheduler, "_schedule_phases", None)  # OneCycleLR's phase ends
            for phase in phases or ():
                phase["end_step"] = (phase["end_step"] + 1) * total / scheduler.total_steps - 1
            scheduler.total_steps = total
            if phases:
                separate_phases(scheduler)


class WarmupCosine(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up over ``warmup_fraction`` of the run, then cosine decay of the learning
    rate to ``min_lr_ratio`` times its peak at ``total_steps`` (stepped every optimizer step).

    ``total_steps`` is an attribute read at every step, so a resumed, longer run is stretched by
    :func:`extend_schedules_to_run_length` like ``OneCycleLR``; it is saved in the state dict.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ):
        if total_steps < 1:
            raise ValueError(f"total_steps must be at least 1, got {total_steps}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.total_steps = int(total_steps)
        self.warmup_fraction = warmup_fraction
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, self._factor, last_epoch)

    def _factor(self, step: int) -> float:
        warmup = round(self.warmup_fraction * self.total_steps)
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine
