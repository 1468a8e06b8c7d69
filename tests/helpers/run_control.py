"""Callbacks that interrupt a training run at a chosen step, for the resume tests (added with
``+callbacks.<name>._target_=helpers.run_control.KillAt +callbacks.<name>.step=N``; tests/ is
on the path of the test process and of the runs it starts), and the exact-resume check."""

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


def assert_resumes_exactly(
    compose_train, overrides, tmp_path, stop_step, resumed_extra=(), before_resume=None
):
    """A run stopped after step ``stop_step`` (mid-epoch) and started again in its run folder
    (resume=auto, no ckpt_path; ``resumed_extra`` overrides, after ``before_resume(last.ckpt)``)
    ends with the weights of the same run uninterrupted, bitwise; every checkpoint loads with
    ``weights_only=True``. Returns both final checkpoints."""
    import torch

    from mmembed.train import run

    common = [
        *overrides, "trainer.min_epochs=0", "test=false", "callbacks.rich_progress_bar=null",
        "callbacks.model_checkpoint.last_every_n_train_steps=1",
    ]  # fmt: skip
    stopper = [
        "+callbacks.stop._target_=helpers.run_control.StopAt", f"+callbacks.stop.step={stop_step}"
    ]
    run(compose_train(common, run_dir=tmp_path / "whole"))
    run(compose_train([*common, *stopper], run_dir=tmp_path / "parts"))
    last = tmp_path / "parts" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == stop_step
    if before_resume is not None:
        before_resume(last)
    run(compose_train([*common, *resumed_extra], run_dir=tmp_path / "parts"))
    whole, parts = (
        torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        for name in ("whole", "parts")
    )
    assert parts["global_step"] == whole["global_step"] > stop_step
    different = [k for k in whole["state_dict"] if not torch.equal(whole["state_dict"][k],
                                                                   parts["state_dict"][k])]
    assert not different, f"{len(different)} tensors differ after the resume: {different[:3]}"
    return whole, parts
