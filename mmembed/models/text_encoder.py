"""Texts (class names, captions, transcripts) -> unit-norm embeddings through the shared table."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmembed.embedding import SharedEmbedding
from mmembed.text.tokenizers import Tokenizer

# Token lists kept per list of texts: label lists repeat every step, batches of captions do not.
_CACHED_TEXT_LISTS = 16


class LabelTextEncoder(nn.Module):
    """Texts -> unit-norm embeddings (N, width): their token embeddings from the shared table,
    optionally through a few Transformer layers (a small text tower, as CLIP's), the mean over
    the real tokens, then an optional linear layer. The table rows are shared with other tasks,
    so the projection gives texts a little room of their own.

    Args:
        tokenizer: tokenises the texts.
        embedding: the shared table (registered here too, as the text decoder does).
        projection: the linear layer on the pooled embedding.
        num_layers: pre-norm Transformer encoder layers over the tokens (0: mean of the rows,
            the label encoder of the video task).
        num_heads, ffn_dim, dropout: settings of those layers.
        max_length: longest token sequence (learned position table size; with layers only).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        embedding: SharedEmbedding,
        projection: bool = True,
        num_layers: int = 0,
        num_heads: int = 4,
        ffn_dim: int = 256,
        dropout: float = 0.0,
        max_length: int = 64,
    ):
        super().__init__()
        self.tokenizer = tokenizer
        self.embedding = embedding
        width = embedding.output_dim
        self.max_length = max_length
        self.layers: nn.ModuleList | None = None
        if num_layers > 0:
            if width % num_heads:
                raise ValueError(f"width {width} must be divisible by num_heads={num_heads}")
            self.positions = nn.Embedding(max_length, width)
            nn.init.normal_(self.positions.weight, std=0.1)  # about the projected rows' scale
            self.layers = nn.ModuleList(
                TextEncoderLayer(width, num_heads, ffn_dim, dropout) for _ in range(num_layers)
            )
            self.norm = nn.LayerNorm(width)
        self.projection = nn.Linear(width, width) if projection else nn.Identity()
        self._token_cache: OrderedDict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = (
            OrderedDict()
        )

    def tokenize(
        self, texts: Sequence[str], device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids (N, L) and a mask of real tokens (N, L); the last few lists are cached.
        With Transformer layers, texts are cut at ``max_length`` tokens."""
        key = tuple(texts)
        if key in self._token_cache:
            self._token_cache.move_to_end(key)
        else:
            max_length = self.max_length if self.layers is not None else None
            self._token_cache[key] = tokenize_texts(self.tokenizer, key, max_length)
            if len(self._token_cache) > _CACHED_TEXT_LISTS:
                self._token_cache.popitem(last=False)
        ids, mask = self._token_cache[key]
        return ids.to(device), mask.to(device)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encode(*self.tokenize(texts, self.embedding.weight.device))

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings (N, width) of padded token ids (N, L) with their mask of real
        tokens (N, L): the tensor-only path (the exported label graph, serving)."""
        tokens = self.embedding(ids)  # (N, L, width)
        if self.layers is not None:
            positions = torch.arange(ids.shape[1], device=ids.device)
            tokens = tokens + self.positions(positions)
            for layer in self.layers:
                tokens = layer(tokens, mask)
            tokens = self.norm(tokens)
        weights = mask.to(tokens.dtype).unsqueeze(-1)
        pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return F.normalize(self.projection(pooled), dim=-1)


class TextEncoderLayer(nn.Module):
    """A pre-norm Transformer encoder layer on ``scaled_dot_product_attention``, in (N, L, D)
    layout: ``nn.TransformerEncoderLayer`` reshapes to (L, N * heads, head_dim), which makes
    ``torch.export`` emit a shape guard it cannot prove for a dynamic number of tokens (the
    audio encoder's ``SelfAttention`` avoids it the same way)."""

    def __init__(self, width: int, num_heads: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ffn_norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(
            nn.Linear(width, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, width)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (N, L, width), ``mask`` (N, L) True at real tokens (they attend to those)."""
        batch, length, width = x.shape
        qkv = self.qkv(self.attention_norm(x)).view(batch, length, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask[:, None, None, :],
            dropout_p=self.dropout.p if self.training else 0.0,
        )  # fmt: skip
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, width)))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


def tokenize_texts(
    tokenizer: Tokenizer, texts: Sequence[str], max_length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ids (N, L) and a mask of real tokens (N, L) of ``texts`` (each cut at
    ``max_length`` tokens if given); a text with no tokens after normalisation is an error
    naming it."""
    if not texts:
        raise ValueError("need at least one text")
    encoded = [tokenizer.encode(text) for text in texts]
    empty = [text for text, ids in zip(texts, encoded, strict=True) if not ids]
    if empty:
        raise ValueError(f"texts with no tokens after normalisation: {empty}")
    if max_length is not None:
        encoded = [ids[:max_length] for ids in encoded]
    length = max(len(ids) for ids in encoded)
    ids = torch.full((len(texts), length), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros((len(texts), length), dtype=torch.bool)
    for row, tokens in enumerate(encoded):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = True
    return ids, mask
