"""Who requeues a preempted job: exactly one owner.

- a submitit job (``hydra/launcher=submitit_slurm|submitit_local``): submitit, through the
  handler it installed for its preemption signal (it re-submits the same Hydra job, counts
  ``max_num_timeout`` and exits rank 0; on the local executor it exits with its requeue code);
- a plain SLURM job (``sbatch`` + ``srun``): ``scontrol requeue`` from rank 0;
- anything else: nobody; the message says how to continue.

Lightning's own SLURM auto-requeue is switched off for every run
(:func:`mmembed.cluster.environment.cluster_plugins`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from typing import Any

from mmembed.cluster.run_id import scheduler_job_id

log = logging.getLogger(__name__)


def submitit_signal() -> int:
    """The signal submitit listens on for preemption and timeouts (``USR2`` unless
    ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


def requeue(global_rank: int, displaced_handlers: dict[int, Any]) -> str:
    """Requeue this job through its owner; returns what was done (rank 0 of a submitit job
    does not return: submitit exits). ``displaced_handlers``: the signal handlers that were
    installed before the preemption callback's (submitit's among them)."""
    if os.environ.get("SUBMITIT_EXECUTOR"):
        handler = displaced_handlers.get(submitit_signal())
        if callable(handler):
            handler(submitit_signal(), None)  # rank 0: requeues and exits; other ranks: returns
        return "submitit requeues the job"
    job_id = scheduler_job_id()
    if job_id and os.environ.get("SLURM_JOB_ID"):
        if global_rank == 0:
            try:
                done = subprocess.run(
                    ["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60
                )
                failure = done.stderr.strip() if done.returncode else ""
            except (OSError, subprocess.TimeoutExpired) as error:
                failure = str(error)
            if failure:
                log.error("scontrol requeue %s failed: %s", job_id, failure)
                return f"scontrol requeue {job_id} failed ({failure})"
        return f"SLURM job {job_id} requeued"
    return "no scheduler to requeue it: start it again with the same MMEMBED_RUN_ID to continue"
