"""CTC decoding: the best path (greedy), and torchaudio's flashlight beam search with an
optional lexicon and n-gram language model."""

from __future__ import annotations

import dataclasses

import torch

from mmembed.models.decoding.options import SpeechDecoding
from mmembed.text.tokenizers import Tokenizer


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks."""
    best = log_probs.argmax(dim=-1)
    hypotheses = []
    for path, length in zip(best, lengths.tolist(), strict=True):
        merged = torch.unique_consecutive(path[:length])
        hypotheses.append(merged[merged != blank_id].tolist())
    return hypotheses


class CTCBeamDecoder:
    """torchaudio's flashlight ``ctc_decoder``: beam search with optional lexicon and KenLM.

    Settings come from ``options`` (:class:`SpeechDecoding`; its ``beam_size``, ``lexicon``,
    ``lm``, ``lm_weight``, ``word_score``, ``unk_score``), with keyword ``overrides`` on top. The
    text comes from the decoded tokens, so a word outside the lexicon (``unk_score`` finite)
    is still spelled out rather than replaced by ``<unk>``.
    """

    def __init__(self, tokenizer: Tokenizer, options: SpeechDecoding | None = None, **overrides):
        from torchaudio.models.decoder import ctc_decoder

        options = dataclasses.replace(options or SpeechDecoding(), **overrides)
        tokens = [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
        # flashlight needs a word-boundary token: the space of a char vocabulary; subword
        # vocabularies mark boundaries inside tokens, so lexicon-free decoding just needs a stub.
        silence = " " if " " in tokens else tokens[tokenizer.unk_id]
        self.tokenizer = tokenizer
        self.options = options
        self.decoder = ctc_decoder(
            lexicon=options.lexicon,
            tokens=tokens,
            lm=options.lm,
            beam_size=options.beam_size,
            lm_weight=options.lm_weight,
            word_score=options.word_score,
            unk_score=options.unk_score,
            blank_token=tokens[tokenizer.blank_id],
            sil_token=silence,
            unk_word=tokens[tokenizer.unk_id],
        )

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        results = self.decoder(log_probs.float().cpu().contiguous(), lengths.int().cpu())
        return [hyps[0].tokens.tolist() if hyps else [] for hyps in results]
