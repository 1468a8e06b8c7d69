"""Text side shared by the tasks: normalisation and tokenizers."""

from mmembed.text.tokenizers import (
    BPETokenizer,
    CharacterView,
    CharTokenizer,
    Tokenizer,
    load_tokenizer,
    load_tokenizer_dict,
    normalize_text,
    train_tokenizer,
)

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "CharacterView",
    "Tokenizer",
    "load_tokenizer",
    "load_tokenizer_dict",
    "normalize_text",
    "train_tokenizer",
]
