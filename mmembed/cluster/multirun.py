"""Hydra multirun with a multi-process trainer started by Lightning itself (``trainer=ddp*``).

Lightning starts ranks 1.. by re-running the command line (``sys.argv``) with the first rank's
``hydra.run.dir``: in a multirun that is the whole sweep (``-m`` and every value), so rank 1 ran
the sweep on its own (Lightning#11300). :func:`sweep_job_ranks` makes those ranks run exactly
this sweep job in this job's folder, and leaves no process group or rank variables behind for
the next job. Launchers that start every rank themselves (submitit, SLURM, torchrun) are left
alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict, read_write

# set in this process by Lightning's launcher when it starts the other ranks
_RANK_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextmanager
def sweep_job_ranks() -> Iterator[None]:
    if not in_multirun():
        yield
        return
    hydra_cfg = HydraConfig.get()
    argv, run_dir = sys.argv, hydra_cfg.run.dir
    saved = {name: os.environ.get(name) for name in _RANK_VARIABLES}
    sys.argv = [argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = argv
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.run.dir = run_dir
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
