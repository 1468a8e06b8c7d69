"""Turning model scores into token sequences: batched beam search over autoregressive decoders,
CTC decoding (greedy and flashlight beam search), and the tasks' decoding settings."""

from mmembed.models.decoding.beam_search import Hypothesis, beam_search, greedy_search
from mmembed.models.decoding.ctc import CTCBeamDecoder, ctc_greedy
from mmembed.models.decoding.options import CaptionDecoding, SpeechDecoding

__all__ = [
    "CTCBeamDecoder",
    "CaptionDecoding",
    "Hypothesis",
    "SpeechDecoding",
    "beam_search",
    "ctc_greedy",
    "greedy_search",
]
