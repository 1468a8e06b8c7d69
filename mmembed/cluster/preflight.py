"""Checks that fail at once, before any data work, instead of hanging at the first collective."""

from __future__ import annotations

import lightning as L

from mmembed.cluster.environment import external_launch


class PreflightError(RuntimeError):
    """The job cannot run as configured (the message names both sides of the mismatch)."""


def check_process_count(trainer: L.Trainer) -> None:
    """One process per device: the trainer's devices x nodes must equal the number of
    processes the launcher (SLURM, torchrun, submitit) started."""
    launch = external_launch()
    if launch is None:
        return
    wanted = trainer.num_devices * trainer.num_nodes
    if wanted != launch.processes:
        raise PreflightError(
            f"the trainer runs one process per device: trainer.devices={trainer.num_devices} x "
            f"trainer.num_nodes={trainer.num_nodes} = {wanted} process(es), but {launch.source} "
            f"started {launch.processes}; make them equal (e.g. trainer.devices="
            f"{max(1, launch.processes // launch.nodes)} trainer.num_nodes={launch.nodes}, or "
            f"launch {wanted} task(s))"
        )
