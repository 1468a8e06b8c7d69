"""The parts of a shared embedding space: pooled, L2-normalised embeddings per modality, the
symmetric contrastive loss that aligns them (CLIP's InfoNCE with a learnable temperature, made
aware of several positives per item), and one small module per modality's path into the space,
for export and serving."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmembed.models.heads import ScaledCosineLogits
from mmembed.models.text_encoder import LabelTextEncoder

__all__ = [
    "AudioEmbedder",
    "ImageEmbedder",
    "PooledProjection",
    "TextEmbedder",
    "VideoEmbedder",
    "contrastive_loss",
    "positive_mask",
]


POOLINGS = ("mean", "attention")


class PooledProjection(nn.Module):
    """Sequence features (B, T, width) -> unit-norm embeddings (B, width): a pool over the real
    positions (``lengths``; None = all), then a linear layer.

    ``pooling="mean"``: the mean of the features. ``"attention"``: a learned query per head
    attends over them (CLIP's attention pool, on ``scaled_dot_product_attention`` so it exports
    with a dynamic length); its query starts at zero, i.e. at the mean of the projected values,
    and learns to weight the positions that tell items apart (a spoken "an emoji of shaking
    face" is mostly its shared prefix, frame by frame).

    The encoders' frame and region features feed the tasks' heads (CTC, caption decoder); this
    gives each modality one vector in the shared space, with layers of its own so the
    contrastive objective does not have to bend the features the task heads read.
    """

    def __init__(self, width: int, pooling: str = "mean", num_heads: int = 4):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if width % num_heads:
            raise ValueError(f"width {width} must be divisible by num_heads={num_heads}")
        self.pooling = pooling
        self.num_heads = num_heads
        if pooling == "attention":
            self.key_value = nn.Linear(width, 2 * width)
            self.query = nn.Parameter(torch.zeros(num_heads, 1, width // num_heads))
        self.projection = nn.Linear(width, width)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        positions = torch.arange(features.shape[1], device=features.device)
        valid = None if lengths is None else positions[None, :] < lengths[:, None]
        if self.pooling == "attention":
            pooled = self._attend(features, valid)
        elif valid is None:
            pooled = features.mean(dim=1)
        else:
            weights = valid.to(features.dtype).unsqueeze(-1)
            pooled = (features * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return F.normalize(self.projection(pooled), dim=-1)

    def _attend(self, features: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = features.shape
        kv = self.key_value(features).view(batch, length, 2, self.num_heads, -1)
        keys, values = kv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, T, head width)
        query = self.query.expand(batch, -1, -1, -1)
        mask = None if valid is None else valid[:, None, None, :]
        pooled = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask)
        return pooled.reshape(batch, width)


def positive_mask(
    rows: Sequence[Hashable], columns: Sequence[Hashable], device: torch.device | None = None
) -> torch.Tensor:
    """(len(rows), len(columns)) bool: True where the keys are equal (the same transcript, the
    same class, the same image)."""
    index: dict[Hashable, int] = {}
    row_ids = torch.tensor([index.setdefault(key, len(index)) for key in rows])
    column_ids = torch.tensor([index.setdefault(key, len(index)) for key in columns])
    return (row_ids[:, None] == column_ids[None, :]).to(device)


def contrastive_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    head: ScaledCosineLogits,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between unit-norm ``queries`` (B, D) and ``keys`` (M, D).

    Logits are ``head``'s scaled cosine similarities (learnable temperature). ``positives``
    (B, M) bool marks the matching pairs (default: the diagonal, B == M); with several
    positives per row or column (an image and its captions, a batch with two videos of one
    class) each direction maximises the probability of *any* positive, ``-log sum_pos
    softmax`` (the multiple-instance NCE of MIL-NCE), so a duplicate is never pushed away
    as a negative. Rows or columns without a positive are left out of their direction.
    """
    logits = head(queries, keys).float()
    if positives is None:
        if logits.shape[0] != logits.shape[1]:
            raise ValueError(f"positives are needed for {tuple(logits.shape)} logits")
        positives = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    if positives.shape != logits.shape:
        raise ValueError(f"positives {tuple(positives.shape)} != logits {tuple(logits.shape)}")
    forward = _multi_positive_nce(logits, positives)
    backward = _multi_positive_nce(logits.t(), positives.t())
    return 0.5 * (forward + backward)


def _multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    # rows without a positive are dropped first: their all -inf logsumexp has a NaN gradient
    has_positive = positives.any(dim=1)
    logits, positives = logits[has_positive], positives[has_positive]
    positive_terms = logits.masked_fill(~positives, float("-inf")).logsumexp(dim=1)
    return (logits.logsumexp(dim=1) - positive_terms).mean()


# --- one module per modality's path into the space (they share the model's parameters) ------


class AudioEmbedder(nn.Module):
    """``(waveforms (B, S), lengths (B,)) -> (B, width)`` unit-norm audio embeddings."""

    def __init__(self, encoder: nn.Module, head: PooledProjection):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        frames, frame_lengths = self.encoder(waveforms, lengths)
        return self.head(frames, frame_lengths)


class ImageEmbedder(nn.Module):
    """``images (B, 3, H, W), normalised as in training -> (B, width)`` unit-norm."""

    def __init__(self, encoder: nn.Module, head: PooledProjection):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))


class VideoEmbedder(nn.Module):
    """``clips (B, 3, T, H, W)`` or K clips per video ``(B, K, 3, T, H, W)`` (averaged) ->
    ``(B, width)`` unit-norm: the space the video task scores label names in."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.dim() == 6:
            batch, num_clips = clips.shape[:2]
            embeddings = F.normalize(self.encoder(clips.flatten(0, 1)), dim=-1)
            return F.normalize(embeddings.view(batch, num_clips, -1).mean(dim=1), dim=-1)
        return F.normalize(self.encoder(clips), dim=-1)


class TextEmbedder(nn.Module):
    """``(ids (B, L), mask (B, L) of real tokens) -> (B, width)`` unit-norm; the ids are the
    model's tokenizer's (``model.text_encoder.tokenize(texts)`` makes both)."""

    def __init__(self, text_encoder: LabelTextEncoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.text_encoder.encode(ids, mask)
