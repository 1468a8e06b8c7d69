"""The run id names the run folder (``conf/hydra/default.yaml``), so every start of a job (its
ranks, a requeue, a manual restart) lands in one folder, where ``resume=auto`` finds its
``last.ckpt``.

In order: ``MMEMBED_RUN_ID``; the scheduler's job id (SLURM, array-aware, or submitit's local
executor); else the default given (a timestamp: a fresh local run, nothing to resume). An
interactive SLURM allocation (``salloc``: job name ``bash`` or ``interactive``, as Lightning's
``SLURMEnvironment`` tells them apart) is not a job to resume: its runs get fresh ids.
"""

from __future__ import annotations

import os

from lightning.fabric.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

RESOLVER = "mmembed.run_id"


def scheduler_job_id() -> str | None:
    """The job id the scheduler gives every start of this job, requeues included."""
    if SLURMEnvironment.detect() and os.environ.get("SLURM_JOB_ID"):
        if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
            return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        return os.environ["SLURM_JOB_ID"]
    return os.environ.get("SUBMITIT_LOCAL_JOB_ID") or None


def given_run_id() -> str | None:
    """The run id set by the user or the scheduler; None for a fresh local run."""
    return os.environ.get("MMEMBED_RUN_ID") or scheduler_job_id()


def run_id(default: str) -> str:
    return given_run_id() or default


def register_resolver() -> None:
    """``${mmembed.run_id:<default>}`` in configs (cached: one value per process)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, run_id, use_cache=True)
