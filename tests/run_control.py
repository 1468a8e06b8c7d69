"""Callbacks that interrupt a training run at a chosen step, for the resume tests (added with
``+callbacks.<name>._target_=run_control.KillAt +callbacks.<name>.step=N``; tests/ is on the
path of the test process and of the runs it starts)."""

import os
import signal

import lightning as L


class KillAt(L.Callback):
    """SIGKILL this process at the end of training step ``step``: after the checkpoint of the
    step before, before this step's (checkpoint callbacks run last)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class StopAt(L.Callback):
    """Stop training after step ``step``, mid-epoch, as ``max_time`` does."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            trainer.should_stop = True


class SignalAt(L.Callback):
    """Send ``signum`` to this process at the end of training step ``step``."""

    def __init__(self, step: int, signum: str):
        self.step = step
        self.signum = getattr(signal, signum)

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)
