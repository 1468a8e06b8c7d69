"""``resume=auto|never``: which checkpoint a training run continues from.

``ckpt_path=...`` always wins. Otherwise, with ``resume=auto`` (the default) a run whose
checkpoint folder holds ``last.ckpt`` continues from it: a requeued job, or a restart with the
same ``MMEMBED_RUN_ID``, picks up where the last one stopped without anyone passing
``ckpt_path`` (a fresh run has a new folder, so nothing to resume). ``resume=never`` refuses a
folder that already holds a checkpoint instead of overwriting it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mmembed.artifacts import load_checkpoint

log = logging.getLogger(__name__)

RESUME_MODES = ("auto", "never")
LAST = "last.ckpt"


class ResumeError(ValueError):
    """The resume setting cannot be honoured (bad value, or a folder it must not reuse)."""


def resume_checkpoint(ckpt_path: str | None, resume: str, checkpoint_dir: str | Path) -> str | None:
    if resume not in RESUME_MODES:
        raise ResumeError(f"resume must be one of {RESUME_MODES}, got {resume!r}")
    if ckpt_path:
        return str(ckpt_path)
    last = Path(checkpoint_dir) / LAST
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
