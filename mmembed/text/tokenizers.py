"""Text tokenizers shared by every task: characters, or subwords (HF ``tokenizers`` BPE).

Both are trained from the training texts, saved with the run (one JSON file) and reloaded by
decoding and export, so ids never drift between training and inference.

Every tokenizer reserves the same four ids, because the tasks rely on them:

* ``0`` ``<blank>``: the CTC blank, and the padding id of decoder inputs (padded positions are
  masked out of attention and loss, so sharing the id costs nothing).
* ``1`` ``<unk>``, ``2`` ``<s>`` (begin of sequence), ``3`` ``</s>`` (end of sequence).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import Literal, Protocol

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from mmembed.artifacts import write_atomically

SPECIAL_TOKENS = ("<blank>", "<unk>", "<s>", "</s>")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
BLANK_ID = PAD_ID

_NOT_WORD = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lowercase, fold accents, keep letters a-z, digits and apostrophes, collapse spaces.

    The same normalisation runs on training targets and on references at scoring time, so
    WER/BLEU never count case or punctuation differences the model was never asked to produce.
    Digits stay digits (they are not spelled out as words); letters outside a-z after folding
    (other scripts, "ß", "æ") are dropped: :func:`dropped_characters` names them, and the data
    modules report them per split.
    """
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", _fold(text))).strip()


def dropped_characters(text: str) -> list[str]:
    """The letters and digits of ``text`` that :func:`normalize_text` drops (after folding
    accents and case), in order: what a model trained on normalised text never sees. Spaces,
    punctuation and symbols are dropped by design and not listed."""
    return [
        ch for ch in _fold(text) if _NOT_WORD.fullmatch(ch) and unicodedata.category(ch)[0] in "LN"
    ]


def _fold(text: str) -> str:
    """Compatibility-decompose, drop combining marks (accents), lowercase."""
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


class Tokenizer(Protocol):
    kind: str
    pad_id: int
    blank_id: int
    unk_id: int
    bos_id: int
    eos_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def id_to_token(self, token_id: int) -> str: ...

    def token_to_id(self, token: str) -> int: ...

    def to_dict(self) -> dict: ...

    def save(self, path: str | PathLike) -> Path: ...


class _SpecialIds:
    pad_id = PAD_ID
    blank_id = BLANK_ID
    unk_id = UNK_ID
    bos_id = BOS_ID
    eos_id = EOS_ID


class CharTokenizer(_SpecialIds):
    """One id per character of the normalised text (space included)."""

    kind = "char"

    def __init__(self, alphabet: Sequence[str]):
        duplicates = [ch for ch, n in Counter(alphabet).items() if n > 1]
        if duplicates or any(len(ch) != 1 for ch in alphabet):
            raise ValueError(f"alphabet must hold distinct single characters, got {alphabet!r}")
        self.alphabet = list(alphabet)
        self._ids = {ch: i + len(SPECIAL_TOKENS) for i, ch in enumerate(self.alphabet)}

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        chars = set()
        for text in texts:
            chars.update(normalize_text(text))
        if not chars:
            raise ValueError("cannot train a tokenizer: the training texts are empty")
        return cls(sorted(chars))

    @property
    def vocab_size(self) -> int:
        return len(SPECIAL_TOKENS) + len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(ch, UNK_ID) for ch in normalize_text(text)]

    def decode(self, ids: Iterable[int]) -> str:
        first = len(SPECIAL_TOKENS)
        return "".join(
            self.alphabet[i - first] for i in map(int, ids) if first <= i < self.vocab_size
        ).strip()

    def id_to_token(self, token_id: int) -> str:
        if token_id < len(SPECIAL_TOKENS):
            return SPECIAL_TOKENS[token_id]
        return self.alphabet[token_id - len(SPECIAL_TOKENS)]

    def token_to_id(self, token: str) -> int:
        if token in SPECIAL_TOKENS:
            return SPECIAL_TOKENS.index(token)
        return self._ids.get(token, UNK_ID)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "alphabet": self.alphabet}

    def save(self, path: str | PathLike) -> Path:
        return _write_json(path, self.to_dict())


class BPETokenizer(_SpecialIds):
    """Byte-pair-encoding subwords (HF ``tokenizers``); word starts carry the ``▁`` marker, so
    decoding restores spaces exactly."""

    kind = "bpe"

    def __init__(self, hf_tokenizer: HFTokenizer):
        for expected_id, token in enumerate(SPECIAL_TOKENS):
            if hf_tokenizer.token_to_id(token) != expected_id:
                raise ValueError(f"BPE vocabulary must map {token!r} to id {expected_id}")
        self.hf = hf_tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 256) -> BPETokenizer:
        normalized = [t for t in (normalize_text(text) for text in texts) if t]
        if not normalized:
            raise ValueError("cannot train a tokenizer: the training texts are empty")
        hf = HFTokenizer(models.BPE(unk_token="<unk>"))
        hf.pre_tokenizer = pre_tokenizers.Metaspace()
        hf.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=False,
            # every character seen becomes a token, so no training text ever maps to <unk>
            limit_alphabet=1000,
        )
        hf.train_from_iterator(normalized, trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(normalize_text(text)).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=True).strip()

    def id_to_token(self, token_id: int) -> str:
        return self.hf.id_to_token(token_id)

    def token_to_id(self, token: str) -> int:
        token_id = self.hf.token_to_id(token)
        return UNK_ID if token_id is None else token_id

    def to_dict(self) -> dict:
        return {"kind": self.kind, "hf_tokenizer": json.loads(self.hf.to_str())}

    def save(self, path: str | PathLike) -> Path:
        return _write_json(path, self.to_dict())


def train_tokenizer(
    texts: Iterable[str], kind: Literal["char", "bpe"] = "char", vocab_size: int = 256
) -> Tokenizer:
    """Train a tokenizer of ``kind`` on ``texts``. ``vocab_size`` applies to ``"bpe"`` only."""
    if kind == "char":
        return CharTokenizer.train(texts)
    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size=vocab_size)
    raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'char' or 'bpe'")


def load_tokenizer(path: str | PathLike) -> Tokenizer:
    """Load a tokenizer saved with ``save`` (a run's ``tokenizer.json``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a saved mmembed tokenizer ({err})") from err
    return load_tokenizer_dict(data, source=str(path))


def load_tokenizer_dict(data: dict, source: str = "<dict>") -> Tokenizer:
    """Rebuild a tokenizer from ``to_dict()`` output (as stored in checkpoints)."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "char":
        return CharTokenizer(data["alphabet"])
    if kind == "bpe":
        return BPETokenizer(HFTokenizer.from_str(json.dumps(data["hf_tokenizer"])))
    raise ValueError(f"{source}: unknown tokenizer kind {kind!r}; expected 'char' or 'bpe'")


def _write_json(path: str | PathLike, data: dict) -> Path:
    return write_atomically(path, json.dumps(data, ensure_ascii=False))
