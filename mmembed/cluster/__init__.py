"""Cluster glue: where a run's processes come from and where its state lives.

- ``run_id.py``: the stable run id naming the run folder (``MMEMBED_RUN_ID``, else the
  SLURM/submitit job id, else a new one), so a requeued job lands in the same folder;
- ``resume.py``: ``resume=auto|never``: continue from the run folder's ``last.ckpt``;
- ``environment.py``: the Lightning ``ClusterEnvironment`` of this process (SLURM, torchrun,
  submitit's local executor) and how many processes the launcher started;
- ``preflight.py``: the trainer's devices x nodes must equal that number, checked before any
  data work;
- ``multirun.py``: a Hydra multirun whose jobs each start their own DDP ranks;
- ``requeue.py``: the one owner of a preempted job's requeue.
"""
