"""Where this process's rank comes from, and how many processes its launcher started.

Lightning detects SLURM (``srun``: ``SLURMEnvironment``) and torchrun
(``TorchElasticEnvironment``) itself; submitit's local executor sets ``SUBMITIT_LOCAL_*``
variables that Lightning does not read, handled by :class:`SubmititLocalEnvironment`. Under
SLURM the environment is passed explicitly with ``auto_requeue=False``: requeueing belongs to
one owner (:mod:`mmembed.cluster.requeue`), never to Lightning as well.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lightning.fabric.plugins.environments import (
    ClusterEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)


class SubmititLocalEnvironment(ClusterEnvironment):
    """The ranks of a job started by submitit's local executor (one node, one process per
    task). All tasks share the job id (the controller's pid), which picks the port."""

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", "127.0.0.1")

    @property
    def main_port(self) -> int:
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        return 20000 + int(os.environ["SUBMITIT_LOCAL_JOB_ID"]) % 20000

    @staticmethod
    def detect() -> bool:
        return os.environ.get("SUBMITIT_EXECUTOR") == "local" and (
            "SUBMITIT_LOCAL_GLOBALID" in os.environ
        )

    def world_size(self) -> int:
        return int(os.environ["SUBMITIT_LOCAL_NTASKS"]) * self._num_nodes()

    def set_world_size(self, size: int) -> None:
        pass  # given by the executor

    def global_rank(self) -> int:
        return int(os.environ["SUBMITIT_LOCAL_GLOBALID"])

    def set_global_rank(self, rank: int) -> None:
        pass  # given by the executor

    def local_rank(self) -> int:
        return int(os.environ["SUBMITIT_LOCAL_LOCALID"])

    def node_rank(self) -> int:
        return int(os.environ.get("SUBMITIT_LOCAL_NODEID", 0))

    @staticmethod
    def _num_nodes() -> int:
        return int(os.environ.get("SUBMITIT_LOCAL_JOB_NUM_NODES", 1))


def cluster_plugins() -> list[ClusterEnvironment]:
    """The environment to give the Trainer (``plugins=``); empty = Lightning's detection
    (torchrun, or its own launcher for ``trainer=ddp*``)."""
    if SubmititLocalEnvironment.detect():
        return [SubmititLocalEnvironment()]
    if SLURMEnvironment.detect():
        return [SLURMEnvironment(auto_requeue=False)]
    return []


@dataclass(frozen=True)
class Launch:
    """How many processes a launcher started for this job, and who said so."""

    processes: int
    nodes: int
    source: str


def external_launch() -> Launch | None:
    """The processes started outside Lightning (SLURM tasks, torchrun workers, submitit local
    tasks); None when Lightning starts them itself (or there is only this one)."""
    if SubmititLocalEnvironment.detect():
        tasks = os.environ["SUBMITIT_LOCAL_NTASKS"]
        return Launch(
            SubmititLocalEnvironment().world_size(),
            SubmititLocalEnvironment._num_nodes(),
            f"submitit's local executor (SUBMITIT_LOCAL_NTASKS={tasks})",
        )
    if SLURMEnvironment.detect():
        tasks = int(os.environ["SLURM_NTASKS"])
        nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", os.environ.get("SLURM_NNODES", 1)))
        return Launch(tasks, nodes, f"SLURM (SLURM_NTASKS={tasks}, {nodes} node(s))")
    if TorchElasticEnvironment.detect():
        world = int(os.environ["WORLD_SIZE"])
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        return Launch(world, max(1, world // per_node), f"torchrun (WORLD_SIZE={world})")
    return None
