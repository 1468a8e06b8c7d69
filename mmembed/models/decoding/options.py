"""Decoding settings of the tasks, one default each. Hydra composes them as structured configs
(registered in ``conf/__init__.py``), so ``task.decoding.beam_size=abc`` fails at composition and
``--cfg job`` lists every option."""

from __future__ import annotations

from dataclasses import dataclass

SPEECH_METHODS = ("greedy", "ctc_beam", "attention")


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


@dataclass
class SpeechDecoding:
    """How a speech recogniser turns frames into text.

    Args:
        method: ``greedy`` (best CTC path), ``ctc_beam`` (flashlight CTC beam search, with an
            optional lexicon and n-gram LM) or ``attention`` (beam search of the joint model's
            decoder).
        beam_size: hypotheses kept by ``ctc_beam`` and ``attention``.
        lexicon: ``ctc_beam``: a flashlight lexicon file (``word  t o k e n s |``), or None for
            lexicon-free decoding.
        lm: ``ctc_beam``: a KenLM binary or ARPA file, or None.
        lm_weight, word_score: ``ctc_beam``: weight of the LM score and bonus per word.
        unk_score: ``ctc_beam`` with a lexicon: the score of a word outside it. Finite: such
            words stay decodable (their text is read from the decoded tokens, which spell them);
            ``-inf``: only lexicon words are ever output.
        length_penalty: ``attention``: exponent of the length normalisation.
        max_length: ``attention``: most generated tokens.
    """

    method: str = "greedy"
    beam_size: int = 8
    lexicon: str | None = None
    lm: str | None = None
    lm_weight: float = 2.0
    word_score: float = 0.0
    unk_score: float = -5.0
    length_penalty: float = 1.0
    max_length: int = 100

    def __post_init__(self) -> None:
        if self.method not in SPEECH_METHODS:
            raise ValueError(f"decoding.method {self.method!r} is not one of {SPEECH_METHODS}")
        _positive("beam_size", self.beam_size)
        _positive("max_length", self.max_length)


@dataclass
class CaptionDecoding:
    """How a captioner generates.

    Args:
        beam_size: beams for test and ``caption()``; 1 = greedy.
        val_beam_size: beams for the per-epoch validation (greedy is cheaper); None =
            ``beam_size``.
        length_penalty: exponent of the length normalisation of beam scores.
        max_length: generated tokens, the end token included.
        no_repeat_ngram_size: forbid repeating n-grams of this size; 0 = off.
    """

    beam_size: int = 3
    val_beam_size: int | None = 1
    length_penalty: float = 1.0
    max_length: int = 32
    no_repeat_ngram_size: int = 0

    def __post_init__(self) -> None:
        _positive("beam_size", self.beam_size)
        if self.val_beam_size is not None:
            _positive("val_beam_size", self.val_beam_size)
        _positive("max_length", self.max_length)

    @property
    def validation_beam_size(self) -> int:
        return self.beam_size if self.val_beam_size is None else self.val_beam_size


def as_options(options, cls):
    """``options`` as a ``cls`` instance: None gives the defaults, a mapping is checked for
    unknown keys (named in the error)."""
    if options is None:
        return cls()
    if isinstance(options, cls):
        return options
    options = dict(options)
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown decoding option(s) {unknown}; expected some of {sorted(known)}")
    return cls(**options)
