"""Autoregressive Transformer text decoder over the shared token table.

Token inputs come from the :class:`~mmembed.SharedEmbedding` and output logits are tied to it
(``embedding.logits``), so the joint speech model and the captioner read and write the same
table every other modality uses.

Besides the full-sequence ``forward`` (training, scoring), the decoder has a cached step for
generation: :meth:`TransformerTextDecoder.memory_cache` projects the encoder memory to every
layer's cross-attention keys and values once, and :meth:`TransformerTextDecoder.step` feeds one
token per hypothesis, taking and returning the self-attention keys and values of the tokens
before it. Both caches are plain tensors, so the step exports as one graph (HF optimum's
"decoder with past") and the beam search runs on the host over it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmembed.embedding import SharedEmbedding
from mmembed.models.decoding.cached import empty_cache
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

    # --- cached generation -------------------------------------------------------------------
    # Caches are (num_layers, 2 [keys, values], rows, num_heads, positions, head_dim).

    @property
    def cache_layout(self) -> tuple[int, int, int]:
        """(num_layers, num_heads, head_dim) of the key/value caches."""
        attention = self.layers.layers[0].self_attn
        return len(self.layers.layers), attention.num_heads, attention.head_dim

    def empty_cache(self, rows: int, like: torch.Tensor | None = None) -> torch.Tensor:
        """The self-attention cache of ``rows`` hypotheses before their first token."""
        reference = self.positions.weight if like is None else like
        return empty_cache(self.cache_layout, rows, reference.device, reference.dtype)

    def memory_cache(self, memory: torch.Tensor) -> torch.Tensor:
        """Every layer's cross-attention keys and values of ``memory`` (B, M, width):
        (num_layers, 2, B, num_heads, M, head_dim). Computed once per input, read every step."""
        width = memory.shape[-1]
        caches = []
        for layer in self.layers.layers:
            attention = layer.multihead_attn
            weight, bias = attention.in_proj_weight, attention.in_proj_bias
            keys = F.linear(memory, weight[width : 2 * width], bias[width : 2 * width])
            values = F.linear(memory, weight[2 * width :], bias[2 * width :])
            caches.append(torch.stack([_heads(keys, attention), _heads(values, attention)]))
        return torch.stack(caches)

    def step(
        self,
        tokens: torch.Tensor,
        self_cache: torch.Tensor,
        memory_cache: torch.Tensor,
        owners: torch.Tensor,
        memory_padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One generation step: next-token log-probabilities (N, V) after each hypothesis's
        latest token, and the self-attention cache with that token appended.

        Args:
            tokens: (N,) the latest token of each of N hypotheses; they all have the same
                length P + 1, P = ``self_cache.shape[4]`` tokens already cached.
            self_cache: (num_layers, 2, N, heads, P, head_dim), row i = hypothesis i
                (:meth:`empty_cache` before the first token).
            memory_cache: :meth:`memory_cache` of B inputs.
            owners: (N,) which input each hypothesis belongs to.
            memory_padding_mask: (B, M) True at padded memory positions, or None.

        Gives the logits of :meth:`forward` at the last position up to float rounding (same
        modules, same order; the sums run over other shapes).
        """
        position = self_cache.shape[4]
        if not torch.compiler.is_compiling() and position >= self.max_length:
            raise ValueError(f"position {position} exceeds max_length={self.max_length}")
        x = (self.embedding(tokens) + self.positions.weight[position])[:, None, :]  # (N, 1, W)
        attend = None
        if memory_padding_mask is not None:
            attend = ~memory_padding_mask.index_select(0, owners)[:, None, None, :]
        appended = []
        for index, layer in enumerate(self.layers.layers):
            if not layer.norm_first:
                raise ValueError("the cached step follows the pre-norm layer (norm_first=True)")
            # self-attention over the cached tokens and this one (all earlier: causal)
            attention = layer.self_attn
            queries, keys, values = F.linear(
                layer.norm1(x), attention.in_proj_weight, attention.in_proj_bias
            ).chunk(3, dim=-1)
            keys = torch.cat([self_cache[index, 0], _heads(keys, attention)], dim=2)
            values = torch.cat([self_cache[index, 1], _heads(values, attention)], dim=2)
            appended.append(torch.stack([keys, values]))
            attended = F.scaled_dot_product_attention(_heads(queries, attention), keys, values)
            x = x + layer.dropout1(attention.out_proj(_merge_heads(attended)))
            # cross-attention over the cached memory keys and values
            attention = layer.multihead_attn
            width = x.shape[-1]
            queries = F.linear(
                layer.norm2(x), attention.in_proj_weight[:width], attention.in_proj_bias[:width]
            )
            memory_keys = memory_cache[index, 0].index_select(0, owners)
            memory_values = memory_cache[index, 1].index_select(0, owners)
            attended = F.scaled_dot_product_attention(
                _heads(queries, attention), memory_keys, memory_values, attn_mask=attend
            )
            x = x + layer.dropout2(attention.out_proj(_merge_heads(attended)))
            x = x + layer._ff_block(layer.norm3(x))
        log_probs = self.head(self.norm(x[:, 0])).float().log_softmax(dim=-1)
        return log_probs, torch.stack(appended)


def _heads(x: torch.Tensor, attention: nn.MultiheadAttention) -> torch.Tensor:
    """(B, L, width) -> (B, heads, L, head_dim)."""
    return x.unflatten(-1, (attention.num_heads, attention.head_dim)).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, L, head_dim) -> (B, L, width)."""
    return x.transpose(1, 2).flatten(2)


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    # nn.Transformer warns (and takes a slow path) when bool and float masks are mixed.
    if mask is None:
        return None
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
