"""Output heads over the shared table: tied logits (scores against every projected row) and
scaled-cosine logits (CLIP-style similarity with a learnable temperature)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmembed.embedding import SharedEmbedding

# CLIP's initial temperature (1 / 0.07) and its cap on the learned scale.
CLIP_INITIAL_SCALE = 1 / 0.07
CLIP_MAX_SCALE = 100.0


class TiedLogits(nn.Module):
    """Logits over the vocabulary from the shared table itself, scaled: no weights of its own.

    ``forward(hidden (..., width)) -> (..., V)`` = ``scale * embedding.logits(hidden)``.

    Args:
        embedding: the shared table. It is owned by whoever built it, so it is referenced here
            but not registered (no second copy of its weights in state dicts).
        scale: ``None`` = ``width ** -0.5``. A layer-normed hidden state and a projected table
            row both have about unit scale per dimension, so their raw dot products start
            around ``sqrt(width)``: saturated softmaxes that stall the first epochs of CTC and
            cross-entropy training.
    """

    def __init__(self, embedding: SharedEmbedding, scale: float | None = None):
        super().__init__()
        object.__setattr__(self, "embedding", embedding)  # a reference, not a submodule
        self.scale = embedding.output_dim**-0.5 if scale is None else float(scale)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.embedding.logits(hidden) * self.scale

    def extra_repr(self) -> str:
        return f"vocabulary={self.embedding.num_embeddings}, scale={self.scale:.4g}"


class ScaledCosineLogits(nn.Module):
    """``scale * cos(x, labels)``: cosine similarities with a learnable temperature, as CLIP.

    ``forward(x (B, width), labels (N, width) unit-norm) -> (B, N)``. The log-scale starts at
    ``log(1 / 0.07)`` and the scale is capped at 100 (CLIP's values).
    """

    def __init__(self, learnable: bool = True, initial_scale: float = CLIP_INITIAL_SCALE):
        super().__init__()
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(initial_scale)), requires_grad=learnable
        )

    @property
    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(CLIP_MAX_SCALE)).exp()

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(x, dim=-1) @ labels.t()
