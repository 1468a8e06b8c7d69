"""``resume=auto|never``: which checkpoint a training run continues from.

``ckpt_path=...`` always wins. Otherwise, with ``resume=auto`` (the default) a run whose
checkpoint folder holds ``last.ckpt`` continues from it: a requeued job, or a restart with the
same ``MMEMBED_RUN_ID``, picks up where the last one stopped without anyone passing
``ckpt_path`` (a fresh run has a new folder, so nothing to resume). ``resume=never`` refuses a
folder that already holds a checkpoint instead of overwriting it.

Lightning's names ``ckpt_path=last`` and ``ckpt_path=hpc`` (its SLURM checkpoint, which fails
on a job's first run because there is none yet) mean the run folder's ``last.ckpt`` here: a
training run starts afresh while there is none.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mmembed.artifacts import load_checkpoint

log = logging.getLogger(__name__)

RESUME_MODES = ("auto", "never")
LAST = "last.ckpt"
# Lightning's ckpt_path names for "the latest checkpoint of this run"
FOLDER_ALIASES = ("last", "hpc")


class ResumeError(ValueError):
    """The resume setting cannot be honoured (bad value, or a folder it must not reuse)."""


def resume_checkpoint(
    ckpt_path: str | None, resume: str, checkpoint_dir: str | Path, training: bool = True
) -> str | None:
    """The checkpoint a run starts from: ``ckpt_path``, else (training runs) the run folder's
    ``last.ckpt`` as ``resume`` allows; None for a fresh start."""
    if resume not in RESUME_MODES:
        raise ResumeError(f"resume must be one of {RESUME_MODES}, got {resume!r}")
    last = Path(checkpoint_dir) / LAST
    if ckpt_path in FOLDER_ALIASES:
        if last.is_file():
            log.info("resuming from %s (ckpt_path=%s)", last, ckpt_path)
            return str(last)
        if not training:
            raise ResumeError(f"ckpt_path={ckpt_path}: there is no {last} to evaluate")
        log.info("ckpt_path=%s: no %s yet, so this run starts afresh", ckpt_path, last)
        return None
    if ckpt_path or not training:
        return str(ckpt_path) if ckpt_path else None
    if not last.is_file():
        return None
    if resume == "never":
        raise ResumeError(
            f"{last} exists and resume=never: this run folder belongs to an earlier run; "
            "continue it with resume=auto, or start a new one under another run id "
            "(MMEMBED_RUN_ID)"
        )
    log.info("resuming from %s (resume=auto)", last)
    return str(last)


def first_logged_step(ckpt_path: str) -> int:
    """The first step a run resumed from this checkpoint logs: its loggers keep what the
    interrupted run logged before it and drop the rest. Lightning's rule: a checkpoint taken
    at the end of a training batch counts that batch's step as logged."""
    checkpoint = load_checkpoint(ckpt_path)
    fit_loop = checkpoint["loops"]["fit_loop"]
    stepped = int(fit_loop["epoch_loop.state_dict"]["_batches_that_stepped"])
    batches = fit_loop["epoch_loop.batch_progress"]["total"]
    return stepped + int(batches["completed"] == batches["processed"] - 1)
