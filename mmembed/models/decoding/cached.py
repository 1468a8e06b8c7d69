"""Beam search over a decoder step that takes and returns its key/value cache explicitly.

:func:`~mmembed.models.decoding.beam_search.beam_search` hands its step the whole prefix of
every live hypothesis. :class:`CachedStep` turns that into one token per hypothesis plus the
cache rows of its parent: a hypothesis of length t + 1 extends exactly one hypothesis of
length t of the same input (its prefix minus the last token), so the parent rows are found by
prefix, and the beam search needs no cache bookkeeping of its own. The same host code drives
the eager decoder (:meth:`~mmembed.models.text_decoder.TransformerTextDecoder.step`) and the
exported decoder-step graphs, which is what makes their outputs token-for-token equal.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmembed.models.decoding.beam_search import Hypothesis, beam_search

# (tokens (N,), self_cache, owners (N,)) -> (log_probs (N, V), self_cache with the token added)
CachedStepFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]
]


def empty_cache(
    layout: tuple[int, int, int],
    rows: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The self-attention cache of ``rows`` hypotheses before their first token, for a decoder
    whose cache layout is (num_layers, num_heads, head_dim)."""
    layers, heads, head_dim = layout
    return torch.zeros((layers, 2, rows, heads, 0, head_dim), device=device, dtype=dtype)


class CachedStep:
    """A ``beam_search`` step over a cached decoder step.

    Args:
        step: runs the decoder on the latest token of each hypothesis (see ``CachedStepFn``);
            the cache's hypothesis axis is dim 2 (``(layers, 2, rows, heads, length, dim)``).
        empty_cache: ``rows -> cache`` before the first token.
    """

    def __init__(self, step: CachedStepFn, empty_cache: Callable[[int], torch.Tensor]):
        self._step = step
        self._empty_cache = empty_cache
        self._cache: torch.Tensor | None = None
        self._rows: dict[tuple[int, tuple[int, ...]], int] = {}

    def __call__(self, prefixes: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        keys = list(zip(owners.tolist(), map(tuple, prefixes.tolist()), strict=True))
        if prefixes.shape[1] == 1:  # a new search (beam_search runs greedy after the beam)
            cache = self._empty_cache(len(keys))
        else:
            parents = [self._rows[(owner, prefix[:-1])] for owner, prefix in keys]
            if parents != list(range(len(self._rows))):
                index = torch.tensor(parents, dtype=torch.long, device=self._cache.device)
                cache = self._cache.index_select(2, index)
            else:
                cache = self._cache
        log_probs, self._cache = self._step(prefixes[:, -1], cache, owners)
        self._rows = {key: row for row, key in enumerate(keys)}
        return log_probs


def cached_beam_search(
    step: CachedStepFn,
    empty_cache: Callable[[int], torch.Tensor],
    batch_size: int,
    bos_id: int,
    eos_id: int,
    **options,
) -> list[Hypothesis]:
    """:func:`~mmembed.models.decoding.beam_search.beam_search` (same ``options``) over a
    cached step."""
    return beam_search(CachedStep(step, empty_cache), batch_size, bos_id, eos_id, **options)
