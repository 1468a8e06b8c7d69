"""Tuning the CTC beam decoder's language-model weight and word score on validation data.

The best ``lm_weight`` and ``word_score`` depend on the acoustic model, the LM and the data,
so they are searched on a grid against the validation word error rate (the log-probabilities
are computed once; each grid point only decodes again) rather than guessed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torchmetrics.functional.text import word_error_rate

from mmembed.models.decoding.ctc import CTCBeamDecoder
from mmembed.models.decoding.options import SpeechDecoding
from mmembed.text.tokenizers import Tokenizer


def grid_search(
    tokenizer: Tokenizer,
    options: SpeechDecoding,
    emissions: Sequence[tuple[torch.Tensor, torch.Tensor]],
    references: Sequence[str],
    lm_weights: Sequence[float],
    word_scores: Sequence[float],
) -> tuple[SpeechDecoding, list[dict[str, float]]]:
    """The options with the lowest WER over the grid, and every grid point's WER.

    ``emissions`` are ``(log_probs (B, T, V), lengths (B,))`` batches whose utterances, in
    order, have the transcripts ``references``. Ties keep the earlier grid point, so list the
    values you prefer first (e.g. a weight of 0 before larger ones).
    """
    if not lm_weights or not word_scores:
        raise ValueError("the grid needs at least one lm_weight and one word_score")
    table, best, best_wer = [], options, float("inf")
    for lm_weight in lm_weights:
        for word_score in word_scores:
            candidate = dataclasses.replace(
                options, method="ctc_beam", lm_weight=float(lm_weight), word_score=float(word_score)
            )
            decoder = CTCBeamDecoder(tokenizer, candidate)
            hypotheses = [
                tokenizer.decode(tokens)
                for log_probs, lengths in emissions
                for tokens in decoder(log_probs, lengths)
            ]
            if len(hypotheses) != len(references):
                raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
            wer = float(word_error_rate(hypotheses, list(references)))
            table.append({"lm_weight": lm_weight, "word_score": word_score, "wer": wer})
            if wer < best_wer:
                best, best_wer = candidate, wer
    return best, table
