"""Preemption: signal -> checkpoint at the next step boundary -> requeue by one owner -> exit.

Schedulers warn before they stop a job: SLURM sends ``SIGUSR1`` (``--signal=USR1@90``) or, under
submitit, ``SIGUSR2`` (``signal_delay_s`` before the time limit), and ``SIGTERM`` when it stops
it. The handler here only notes the signal: Lightning's own handlers save inside the signal
handler (possibly mid-step) and run collectives there. At the end of the current training step
every rank agrees on what was received (one small all-reduce per step), ``last.ckpt`` is
written, and then:

- ``SIGUSR1``/``SIGUSR2``: the job is requeued by exactly one owner
  (:func:`mmembed.cluster.requeue.requeue`: submitit's handler under submitit, else
  ``scontrol requeue`` on SLURM; Lightning's auto-requeue is always off), then it exits;
- ``SIGTERM``: it exits (the scheduler, or whoever sent it, decides what comes next).

The requeued job finds ``last.ckpt`` in its run folder and continues from it (``resume=auto``).
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType
from typing import Any

import lightning as L
import torch

from mmembed.callbacks.checkpoint import RunCheckpoint
from mmembed.cluster.requeue import requeue

log = logging.getLogger(__name__)

# What each signal asks for, in increasing order of precedence when ranks got different ones.
STOP, REQUEUE = 1, 2
SIGNALS = {signal.SIGTERM: STOP, signal.SIGUSR1: REQUEUE, signal.SIGUSR2: REQUEUE}


class Preempted(SystemExit):
    """Training stopped on a preemption signal after saving ``last.ckpt`` (exit status 75,
    EX_TEMPFAIL: try again)."""

    def __init__(self, message: str):
        super().__init__(os.EX_TEMPFAIL)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Preemption(L.Callback):
    def __init__(self) -> None:
        self._received: int | None = None
        self._previous: dict[int, Any] = {}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self._received = signum
        log.warning("received %s: checkpointing after this step", signal.Signals(signum).name)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registers its signal handlers just before training; ours replace them
        self._received = None
        self._previous = {signum: signal.signal(signum, self._note) for signum in SIGNALS}

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        self._restore_handlers()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        action = SIGNALS.get(self._received, 0) if self._received else 0
        if trainer.world_size > 1:  # every rank stops at this step if any rank was signalled
            agreed = trainer.strategy.reduce(
                torch.tensor(action, device=trainer.strategy.root_device), reduce_op="max"
            )
            action = int(agreed.item())
        if not action:
            return
        checkpoint = next((c for c in trainer.callbacks if isinstance(c, RunCheckpoint)), None)
        if checkpoint is not None:
            checkpoint.save_last_now(trainer)
            saved = f"saved {checkpoint.last_model_path} at step {trainer.global_step}"
        else:
            saved = "no RunCheckpoint callback, nothing saved"
        signum = self._received or (signal.SIGUSR1 if action == REQUEUE else signal.SIGTERM)
        verb = "preempted" if action == REQUEUE else "stopped"
        reason = f"{verb} by {signal.Signals(signum).name}"
        log.warning("%s: %s", reason, saved)
        displaced = dict(self._previous)
        self._restore_handlers()
        if action == REQUEUE:
            owner = requeue(trainer.global_rank, displaced)  # submitit's rank 0 exits here
            raise Preempted(f"{reason}: {saved}; {owner}")
        raise Preempted(f"{reason}: {saved}")
