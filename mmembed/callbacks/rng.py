"""Every rank's random-number streams, saved in checkpoints and restored on resume.

Lightning restores weights, optimizer, schedules and loops but not the RNGs, so dropout,
SpecAugment masks and anything else drawing random numbers would take other values after a
resume. Ranks draw different amounts (their batches differ), so each rank's state is kept.
States are plain data (tensors, ints, lists), loadable with ``weights_only=True``.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist


def rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) generator states, as plain data."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RngStates(L.Callback):
    """Saves every rank's RNG states with each checkpoint (``state_dict`` gathers them: it runs
    on all ranks, as Lightning's checkpoint saves do) and restores this rank's when training
    starts, after the resumed loader has prefetched, exactly where the saved run stood."""

    def __init__(self) -> None:
        self._to_restore: list[dict[str, Any]] | None = None
        self._rank = 0

    def state_dict(self) -> dict[str, Any]:
        state = rng_state()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            states: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(states, state)
            return {"ranks": states}
        return {"ranks": [state]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict.get("ranks")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._to_restore:
            set_rng_state(self._to_restore[trainer.global_rank % len(self._to_restore)])
            self._to_restore = None
