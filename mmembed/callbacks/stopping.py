"""Why training stopped: its schedule, or a limit that cut it short."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import timedelta

import lightning as L
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

# Reasons meaning the run trained its whole configured schedule.
SCHEDULE = ("max_epochs", "max_steps")


@dataclass(frozen=True)
class TrainingStop:
    """``stopped_by``: ``max_epochs`` or ``max_steps`` (the schedule finished), ``early_stopping``,
    ``max_time``, ``interrupted`` (Ctrl-C), ``fast_dev_run``, or ``should_stop`` (another
    callback); ``detail`` says it in words."""

    stopped_by: str
    finished_schedule: bool
    epochs: int
    max_epochs: int | None
    global_step: int
    scheduled_steps: int | None
    detail: str

    def describe(self) -> str:
        """The final report's line."""
        steps = f"step {self.global_step}" + (
            f" of {self.scheduled_steps}" if self.scheduled_steps is not None else ""
        )
        epochs = f"epoch {self.epochs}" + (
            f" of {self.max_epochs}" if self.max_epochs is not None else ""
        )
        where = f"at {steps} ({epochs})"
        if self.finished_schedule:
            return f"training finished its schedule ({self.stopped_by}) {where}"
        if self.stopped_by == "early_stopping":
            return f"training stopped early {where}: {self.detail}"
        return (
            f"training was CUT SHORT by {self.stopped_by} {where}: {self.detail}; the "
            "learning-rate schedule did not finish, so these figures are not those of the "
            "configured run"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def training_stop(trainer: L.Trainer) -> TrainingStop:
    """Read off a trainer after ``fit`` why it stopped.

    Lightning itself says "max_epochs reached" when ``max_time`` ends the last epoch early, so
    a stop requested through ``trainer.should_stop`` before the scheduled step count is
    attributed to whoever requested it: early stopping (which records its reason), the
    ``max_time`` timer (whose time is up), or another callback.
    """
    scheduled = trainer.estimated_stepping_batches
    scheduled_steps = int(scheduled) if math.isfinite(scheduled) else None
    max_steps_hit = trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps
    cut = trainer.should_stop and (scheduled_steps is None or trainer.global_step < scheduled_steps)
    detail = ""
    if trainer.interrupted:
        reason, detail = "interrupted", "the run was interrupted"
    elif trainer.fast_dev_run:
        reason, detail = "fast_dev_run", "a debug run of a few batches"
    elif not cut:
        reason = "max_steps" if max_steps_hit else "max_epochs"
    elif stopped := [
        callback
        for callback in trainer.early_stopping_callbacks
        if callback.stopping_reason != EarlyStoppingReason.NOT_STOPPED
    ]:
        reason = "early_stopping"
        detail = stopped[0].stopping_reason_message or stopped[0].stopping_reason.name.lower()
    elif timer := _expired_timer(trainer):
        reason = "max_time"
        detail = f"trainer.max_time={timer} was reached (the run's wall-time limit)"
    else:
        reason, detail = "should_stop", "a callback set trainer.should_stop"
    return TrainingStop(
        stopped_by=reason,
        finished_schedule=reason in SCHEDULE,
        epochs=trainer.current_epoch,
        max_epochs=trainer.max_epochs if trainer.max_epochs not in (None, -1) else None,
        global_step=trainer.global_step,
        scheduled_steps=scheduled_steps,
        detail=detail,
    )


def _expired_timer(trainer: L.Trainer) -> str | None:
    """The limit of a ``max_time`` timer whose time is up, as ``H:MM:SS``."""
    for callback in trainer.callbacks:
        if isinstance(callback, Timer):
            remaining = callback.time_remaining("train")
            if remaining is not None and remaining <= 0:
                return str(timedelta(seconds=round(remaining + callback.time_elapsed("train"))))
    return None
