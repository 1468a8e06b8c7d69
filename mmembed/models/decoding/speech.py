"""Frame scores -> transcripts by the decoding method, on the host: greedy CTC, flashlight CTC
beam search, or the attention beam search over a cached decoder step. One code path for the
eager model (:class:`~mmembed.tasks.speech_recognition.SpeechRecognition`) and the exported
graphs (:mod:`mmembed.inference.speech`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mmembed.models.decoding.cached import CachedStepFn, cached_beam_search
from mmembed.models.decoding.ctc import CTCBeamDecoder, ctc_greedy
from mmembed.models.decoding.options import SpeechDecoding
from mmembed.text.tokenizers import Tokenizer


class SpeechDecoder:
    """Args:
    tokenizer: turns the chosen ids into text.
    options: the decoding settings (``method`` picks the decoder).
    attention_search: ``beam_search`` settings of ``method="attention"``.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        options: SpeechDecoding,
        attention_search: dict[str, Any] | None = None,
    ):
        self.tokenizer = tokenizer
        self.options = options
        self.attention_search = attention_search or {}
        self._ctc_beam: CTCBeamDecoder | None = None  # built on first use (loads the LM)

    def __call__(
        self,
        log_probs: torch.Tensor,
        frame_lengths: torch.Tensor,
        step: CachedStepFn | None = None,
        empty_cache: Callable[[int], torch.Tensor] | None = None,
    ) -> list[str]:
        """Transcripts of CTC log-probabilities (B, T, V); ``method="attention"`` also needs the
        decoder's cached ``step`` over the batch's memory and its ``empty_cache``."""
        method = self.options.method
        if method == "greedy":
            token_lists = ctc_greedy(log_probs, frame_lengths, self.tokenizer.blank_id)
        elif method == "ctc_beam":
            if self._ctc_beam is None:
                self._ctc_beam = CTCBeamDecoder(self.tokenizer, self.options)
            token_lists = self._ctc_beam(log_probs, frame_lengths)
        else:
            if step is None or empty_cache is None:
                raise ValueError("decoding.method='attention' needs the decoder step")
            hypotheses = cached_beam_search(
                step,
                empty_cache,
                log_probs.shape[0],
                self.tokenizer.bos_id,
                self.tokenizer.eos_id,
                device=log_probs.device,
                **self.attention_search,
            )
            token_lists = [hyp.tokens for hyp in hypotheses]
        return [self.tokenizer.decode(tokens) for tokens in token_lists]
