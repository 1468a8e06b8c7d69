"""The run mechanics every mmembed training run gets (the app adds them; see ``mmembed.train``):

- :class:`RunCheckpoint` (``checkpoint.py``): ``ModelCheckpoint`` whose ``last.ckpt`` is always
  the latest state, optionally every N steps mid-epoch, keeping the best of the run it resumes;
- :class:`AtomicCheckpointIO` (``checkpoint_io.py``): every checkpoint written to a temporary
  file beside its target, fsynced and renamed, so a kill never leaves a truncated one;
- :class:`RngStates` (``rng.py``): every rank's random-number streams saved and restored;
- :class:`CommandLineLimits` (``limits.py``): a resumed run keeps its own command line's early
  stopping patience and ``max_time`` budget;
- :class:`Preemption` (``preemption.py``): the preemption signal becomes a checkpoint at the next
  step boundary, then the requeue by its one owner and an exit.
"""

from mmembed.callbacks.checkpoint import RunCheckpoint
from mmembed.callbacks.checkpoint_io import AtomicCheckpointIO
from mmembed.callbacks.limits import CommandLineLimits
from mmembed.callbacks.preemption import Preempted, Preemption
from mmembed.callbacks.rng import RngStates

__all__ = [
    "AtomicCheckpointIO",
    "CommandLineLimits",
    "Preempted",
    "Preemption",
    "RngStates",
    "RunCheckpoint",
]
