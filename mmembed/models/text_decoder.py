"""Autoregressive Transformer text decoder over the shared token table.

Token inputs come from the :class:`~mmembed.SharedEmbedding` and output logits are tied to it
(``embedding.logits``), so the joint speech model and the captioner read and write the same
table every other modality uses.
"""

from __future__ import annotations

import torch
from torch import nn

from mmembed.embedding import SharedEmbedding
from mmembed.models.heads import TiedLogits


class TransformerTextDecoder(nn.Module):
    """Pre-norm Transformer decoder with learned positions; cross-attends to encoder memory.

    Args:
        embedding: the shared table (its ``output_dim`` is the decoder width).
        num_layers, num_heads, ffn_dim, dropout: ``nn.TransformerDecoder`` settings.
        max_length: longest token sequence (learned position table size).
    """

    def __init__(
        self,
        embedding: SharedEmbedding,
        num_layers: int = 2,
        num_heads: int = 4,
        ffn_dim: int = 512,
        dropout: float = 0.1,
        max_length: int = 128,
    ):
        super().__init__()
        width = embedding.output_dim
        if width % num_heads:
            raise ValueError(f"width {width} must be divisible by num_heads={num_heads}")
        self.embedding = embedding
        self.max_length = max_length
        self.positions = nn.Embedding(max_length, width)
        # about the scale of the shared table's projected rows, so positions are not drowned out
        nn.init.normal_(self.positions.weight, std=0.1)
        layer = nn.TransformerDecoderLayer(
            width, num_heads, ffn_dim, dropout, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerDecoder(layer, num_layers)
        self.norm = nn.LayerNorm(width)
        self.head = TiedLogits(embedding)

    def forward(
        self,
        input_ids: torch.Tensor,
        memory: torch.Tensor,
        memory_padding_mask: torch.Tensor | None = None,
        input_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits over the shared vocabulary, (B, L, V). Padding masks are True at padding."""
        length = input_ids.shape[1]
        if length > self.max_length:
            raise ValueError(f"sequence of {length} tokens exceeds max_length={self.max_length}")
        positions = torch.arange(length, device=input_ids.device)
        x = self.embedding(input_ids) + self.positions(positions)
        causal = torch.triu(
            torch.full((length, length), float("-inf"), device=input_ids.device), diagonal=1
        )
        hidden = self.layers(
            x,
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=_float_mask(input_padding_mask, x.dtype),
            memory_key_padding_mask=_float_mask(memory_padding_mask, x.dtype),
        )
        return self.head(self.norm(hidden))


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    # nn.Transformer warns (and takes a slow path) when bool and float masks are mixed.
    if mask is None:
        return None
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
