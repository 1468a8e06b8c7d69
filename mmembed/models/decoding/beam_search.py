"""Batched beam search (and greedy decoding as its beam-1 case) for autoregressive decoders.

The decoder is reached through ``step(prefixes, beam_to_item) -> log_probs``: ``prefixes`` are
(N, t) token ids for N live hypotheses, ``beam_to_item`` (N,) says which input item each one
belongs to (to pick its encoder memory), and the result is (N, V) next-token log-probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Hypothesis:
    tokens: list[int]  # without the begin token, without the end token
    log_likelihood: float  # sum of token log-probabilities, the end token included
    score: float  # log_likelihood / length ** length_penalty, what the search maximises


def _normalised(log_likelihood: float, length: int, length_penalty: float) -> float:
    return log_likelihood / max(length, 1) ** length_penalty


def _banned_by_ngram(prefix: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in ``prefix``."""
    if n <= 0 or len(prefix) < n:
        return set()
    context = tuple(prefix[len(prefix) - n + 1 :])
    banned = set()
    for start in range(len(prefix) - n + 1):
        if tuple(prefix[start : start + n - 1]) == context:
            banned.add(prefix[start + n - 1])
    return banned


@torch.no_grad()
def beam_search(
    step: StepFn,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    max_length: int = 32,
    length_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    device: torch.device | str = "cpu",
    ensure_not_worse_than_greedy: bool = True,
) -> list[Hypothesis]:
    """Best hypothesis per input item.

    Args:
        beam_size: live hypotheses kept per item; 1 is greedy decoding.
        max_length: most generated tokens (the end token included).
        length_penalty: exponent of the length normalisation (0: raw log-likelihood, which
            favours short outputs; 1: per-token average).
        no_repeat_ngram_size: forbid repeating any n-gram of this size (0: off).
        ensure_not_worse_than_greedy: also run greedy decoding and keep it where it scores
            higher, so a beam never returns a worse score than greedy under the same criterion
            (beam pruning alone does not guarantee that).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    best = _search(
        step,
        batch_size,
        bos_id,
        eos_id,
        beam_size,
        max_length,
        length_penalty,
        no_repeat_ngram_size,
        device,
    )
    if beam_size > 1 and ensure_not_worse_than_greedy:
        greedy = _search(
            step,
            batch_size,
            bos_id,
            eos_id,
            1,
            max_length,
            length_penalty,
            no_repeat_ngram_size,
            device,
        )
        best = [g if g.score > b.score else b for b, g in zip(best, greedy, strict=True)]
    return best


def greedy_search(
    step: StepFn, batch_size: int, bos_id: int, eos_id: int, **kwargs
) -> list[Hypothesis]:
    return beam_search(step, batch_size, bos_id, eos_id, beam_size=1, **kwargs)


def _search(
    step: StepFn,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    max_length: int,
    length_penalty: float,
    no_repeat_ngram_size: int,
    device: torch.device | str,
) -> list[Hypothesis]:
    # Each item starts with one live hypothesis; it widens to beam_size after the first step.
    live: list[list[tuple[list[int], float]]] = [[([], 0.0)] for _ in range(batch_size)]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    for position in range(max_length):
        rows = [(item, hyp) for item in range(batch_size) for hyp in live[item]]
        if not rows:
            break
        prefixes = torch.tensor(
            [[bos_id, *tokens] for _, (tokens, _) in rows], dtype=torch.long, device=device
        )
        owners = torch.tensor([item for item, _ in rows], dtype=torch.long, device=device)
        log_probs = step(prefixes, owners).float()
        for row, (_, (tokens, _)) in enumerate(rows):
            banned = _banned_by_ngram(tokens, no_repeat_ngram_size)
            if banned:
                log_probs[row, list(banned)] = float("-inf")
        if position == max_length - 1:  # last step: only the end token may be emitted
            eos_column = log_probs[:, eos_id].clone()
            log_probs.fill_(float("-inf"))
            log_probs[:, eos_id] = eos_column
        totals = log_probs + torch.tensor([ll for _, (_, ll) in rows], device=device)[:, None]
        next_live: list[list[tuple[list[int], float]]] = [[] for _ in range(batch_size)]
        row = 0
        for item in range(batch_size):
            count = len(live[item])
            if count == 0:
                continue
            candidates = totals[row : row + count].flatten()
            top = candidates.topk(min(2 * beam_size, candidates.numel()))
            for value, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                if value == float("-inf") or len(next_live[item]) >= beam_size:
                    break
                token = flat % totals.shape[1]
                tokens = rows[row + flat // totals.shape[1]][1][0]
                if token == eos_id:
                    length = len(tokens) + 1
                    score = _normalised(value, length, length_penalty)
                    finished[item].append(Hypothesis(tokens, value, score))
                else:
                    next_live[item].append(([*tokens, token], value))
            if len(finished[item]) >= beam_size:
                next_live[item] = []
            row += count
        live = next_live
    results = []
    for item in range(batch_size):
        pool = finished[item] or [
            Hypothesis(tokens, ll, _normalised(ll, len(tokens), length_penalty))
            for tokens, ll in live[item]
        ]
        results.append(max(pool, key=lambda hyp: hyp.score))
    return results
