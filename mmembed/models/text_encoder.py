"""Texts (class names, short phrases) -> unit-norm embeddings through the shared table."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmembed.embedding import SharedEmbedding
from mmembed.text.tokenizers import Tokenizer


class LabelTextEncoder(nn.Module):
    """Texts -> unit-norm embeddings (N, width): the mean of their token embeddings (padding
    excluded), then an optional linear layer. The table rows are shared with other tasks, so
    the projection gives labels a little room of their own.

    Args:
        tokenizer: tokenises the texts.
        embedding: the shared table (registered here too, as the text decoder does).
        projection: the linear layer on the pooled embedding.
    """

    def __init__(self, tokenizer: Tokenizer, embedding: SharedEmbedding, projection: bool = True):
        super().__init__()
        self.tokenizer = tokenizer
        self.embedding = embedding
        width = embedding.output_dim
        self.projection = nn.Linear(width, width) if projection else nn.Identity()
        self._token_cache: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def tokenize(
        self, texts: Sequence[str], device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids (N, L) and a mask of real tokens (N, L); cached per list of texts."""
        key = tuple(texts)
        if key not in self._token_cache:
            self._token_cache[key] = tokenize_texts(self.tokenizer, key)
        ids, mask = self._token_cache[key]
        return ids.to(device), mask.to(device)

    def embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings (N, width) of tokenised texts (:meth:`tokenize`): the exported
        label graph."""
        tokens = self.embedding(ids)  # (N, L, width)
        weights = mask.to(tokens.dtype).unsqueeze(-1)
        pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1)
        return F.normalize(self.projection(pooled), dim=-1)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.embed(*self.tokenize(texts, self.embedding.weight.device))


def tokenize_texts(tokenizer: Tokenizer, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ids (N, L) and a mask of real tokens (N, L) of ``texts``; a text with no tokens
    after normalisation is an error naming it."""
    if not texts:
        raise ValueError("need at least one text")
    encoded = [tokenizer.encode(text) for text in texts]
    empty = [text for text, ids in zip(texts, encoded, strict=True) if not ids]
    if empty:
        raise ValueError(f"texts with no tokens after normalisation: {empty}")
    length = max(len(ids) for ids in encoded)
    ids = torch.full((len(texts), length), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros((len(texts), length), dtype=torch.bool)
    for row, tokens in enumerate(encoded):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = True
    return ids, mask
