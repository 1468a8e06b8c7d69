"""``ModelCheckpoint`` for runs that get killed, requeued and resumed.

Lightning 2.6 writes ``last.ckpt`` only together with a top-k checkpoint, so after epochs that
did not improve the monitored metric (or after a ``max_time`` stop mid-epoch) ``last.ckpt`` was
stale and a resumed run lost those epochs; a second run in the same folder wrote
``last-v1.ckpt``; and resuming into another folder forgot the best score and tested a different
checkpoint. :class:`RunCheckpoint` fixes each of these and adds mid-epoch ``last.ckpt`` saves.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from mmembed.artifacts import remove_stale_temporaries

log = logging.getLogger(__name__)


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (same arguments) whose ``last.ckpt`` is always the latest state.

    - ``last.ckpt`` is written at every epoch end or validation, whether or not a top-k
      checkpoint was, and when training stops for any reason (``max_time`` mid-epoch: at the
      step it stops at, so a resume continues with the next batch);
    - ``last_every_n_train_steps``: also every N optimizer steps, mid-epoch, independently of
      the top-k schedule (a resumed run continues at the next batch);
    - ``enable_version_counter`` defaults to False: one ``last.ckpt`` per run folder, never
      ``last-v1.ckpt``;
    - a resumed run keeps the best score and best checkpoint of the run it continues, even from
      another folder (Lightning's own only does so within the same folder);
    - temporary files of interrupted writes (:class:`AtomicCheckpointIO`) are removed at start.
    """

    def __init__(
        self,
        *args: Any,
        last_every_n_train_steps: int | None = None,
        enable_version_counter: bool = False,
        **kwargs: Any,
    ):
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)
        if last_every_n_train_steps is not None and last_every_n_train_steps < 1:
            raise ValueError(
                f"last_every_n_train_steps must be a positive number of steps or None, "
                f"got {last_every_n_train_steps}"
            )
        self.last_every_n_train_steps = last_every_n_train_steps
        self._last_saves = 0
        self._last_saved_step: int | None = None
        self._stopped_at: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.dirpath and "://" not in str(self.dirpath):
            for stale in remove_stale_temporaries(self.dirpath, "*.ckpt"):
                log.info("removed %s, left by an interrupted checkpoint write", stale)

    def save_last_now(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` with the current state (the top-k schedule is unaffected)."""
        if (
            not self.save_last
            or trainer.fast_dev_run
            or trainer.state.fn != "fit"
            or trainer.sanity_checking
        ):
            return
        # Lightning skips a top-k save at a step that already has a checkpoint: a last.ckpt
        # written mid-epoch must not stand in for the best checkpoint of the next validation
        top_k_step = self._last_global_step_saved
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_global_step_saved = top_k_step

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        if self._stopped_at == trainer.global_step:
            return  # keep the mid-epoch state of the stop (see on_train_batch_end)
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_saved_step = trainer.global_step
        self._last_saves += 1

    def _then_last(self, trainer: L.Trainer, hook: Any, *args: Any) -> None:
        """Run Lightning's ``hook``; write ``last.ckpt`` if it did not."""
        saves = self._last_saves
        hook(trainer, *args)
        if self._last_saves == saves:
            self.save_last_now(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        every = self.last_every_n_train_steps
        step = trainer.global_step
        # A stop decided at this step (max_time, a callback) is saved here, mid-epoch, and the
        # saves that follow at this step leave it: they record the epoch as finished, and a
        # resume from them would skip the rest of it.
        due = trainer.should_stop or (every and step % every == 0)
        if due and self._last_saved_step != step:
            self.save_last_now(trainer)
        if trainer.should_stop and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._stopped_at = step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._should_save_on_train_epoch_end(trainer):
            self._then_last(trainer, super().on_train_epoch_end, pl_module)
        else:
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._should_save_on_train_epoch_end(trainer):
            super().on_validation_end(trainer, pl_module)
        else:
            self._then_last(trainer, super().on_validation_end, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a stop between validations (max_time, a stopping callback) leaves newer steps
        if self._last_saved_step != trainer.global_step:
            self.save_last_now(trainer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        dirpath = state_dict.get("dirpath", self.dirpath)
        if dirpath != self.dirpath:
            # Lightning would keep only best_model_path; the best so far is still the best
            log.info("resuming a run whose checkpoints are in %s: keeping its best", dirpath)
            state_dict = {**state_dict, "dirpath": self.dirpath}
        super().load_state_dict(state_dict)
