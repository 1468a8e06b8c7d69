"""Lightning callbacks of mmembed.

What the training app adds to every trainer, whatever the ``callbacks`` config: guards that keep
bad data or a diverging run from passing silently, the report of why training stopped, and
atomic checkpoint writing. The optional ones are configured in ``conf/callbacks/``: freezing
schedules, smoothed metrics, decoding tuning."""

from mmembed.callbacks.checkpoint_io import AtomicCheckpointIO
from mmembed.callbacks.finite_loss import FiniteLossCheck, NonFiniteLossError
from mmembed.callbacks.load_skips import LoadSkipsReport
from mmembed.callbacks.stopping import TrainingStop, training_stop

__all__ = [
    "AtomicCheckpointIO",
    "FiniteLossCheck",
    "LoadSkipsReport",
    "NonFiniteLossError",
    "TrainingStop",
    "run_guards",
    "training_stop",
]


def run_guards() -> list:
    """The callbacks every ``mmembed-train`` run gets (``callbacks=none`` keeps them)."""
    return [LoadSkipsReport(), FiniteLossCheck()]
