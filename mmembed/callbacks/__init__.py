"""Lightning callbacks of mmembed.

What the training app adds to every trainer, whatever the ``callbacks`` config (see
``mmembed.train``):

- guards that keep bad data or a diverging run from passing silently (:class:`LoadSkipsReport`,
  :class:`FiniteLossCheck`) and the report of why training stopped (:func:`training_stop`);
- the run mechanics of jobs that get killed, preempted and resumed: :class:`RngStates`
  (``rng.py``: every rank's random-number streams saved and restored), :class:`CommandLineLimits`
  (``limits.py``: a resumed run keeps its own command line's early-stopping patience and
  ``max_time`` budget) and :class:`Preemption` (``preemption.py``: the preemption signal becomes
  a checkpoint at the next step boundary, then the requeue by its one owner and an exit);
- :class:`AtomicCheckpointIO` (``checkpoint_io.py``, the trainer's plugin in
  ``conf/trainer/default.yaml``): every checkpoint written to a temporary file beside its
  target, fsynced and renamed, so a kill never leaves a truncated one.

The checkpoint callback of ``conf/callbacks/model_checkpoint.yaml`` is :class:`RunCheckpoint`
(``checkpoint.py``): ``last.ckpt`` is always the latest state, optionally every N steps
mid-epoch, and a resumed run keeps the best of the run it continues. The other optional ones
are configured in ``conf/callbacks/`` too: freezing schedules, smoothed metrics, decoding
tuning."""

from mmembed.callbacks.checkpoint import RunCheckpoint
from mmembed.callbacks.checkpoint_io import AtomicCheckpointIO
from mmembed.callbacks.finite_loss import FiniteLossCheck, NonFiniteLossError
from mmembed.callbacks.limits import CommandLineLimits
from mmembed.callbacks.load_skips import LoadSkipsReport
from mmembed.callbacks.preemption import Preempted, Preemption
from mmembed.callbacks.rng import RngStates
from mmembed.callbacks.stopping import TrainingStop, training_stop

__all__ = [
    "AtomicCheckpointIO",
    "CommandLineLimits",
    "FiniteLossCheck",
    "LoadSkipsReport",
    "NonFiniteLossError",
    "Preempted",
    "Preemption",
    "RngStates",
    "RunCheckpoint",
    "TrainingStop",
    "run_guards",
    "run_mechanics",
    "training_stop",
]


def run_guards() -> list:
    """The callbacks every ``mmembed-train`` run gets (``callbacks=none`` keeps them)."""
    return [LoadSkipsReport(), FiniteLossCheck()]


def run_mechanics() -> list:
    """The callbacks that make every ``mmembed-train`` run survive kills, preemption and
    resumes (``callbacks=none`` keeps them)."""
    return [Preemption(), RngStates(), CommandLineLimits()]
