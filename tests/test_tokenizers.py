"""Tokenizers: round trips, reserved ids, save/load, errors."""

import pytest

from mmembed.text import (
    BPETokenizer,
    CharacterView,
    CharTokenizer,
    load_tokenizer,
    load_tokenizer_dict,
    normalize_text,
    train_tokenizer,
)
from mmembed.text.tokenizers import (
    BLANK_ID,
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    WORD_MARKER,
)

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "He didn't see the dog; it was hiding!",
    "A café in Zürich serves coffee",
] * 5


def test_normalize_text_lowercases_and_strips_punctuation():
    assert normalize_text("  He DIDN'T -- see   Zürich! ") == "he didn't see zurich"
    assert normalize_text("...") == ""


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_round_trip_of_normalised_text(kind):
    tokenizer = train_tokenizer(TEXTS, kind=kind, vocab_size=60)
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert ids and all(i >= 4 for i in ids), "training text must not map to special ids"
        assert tokenizer.decode(ids) == normalize_text(text)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_reserved_ids_are_the_same_for_every_kind(kind):
    tokenizer = train_tokenizer(TEXTS, kind=kind, vocab_size=60)
    assert (tokenizer.pad_id, tokenizer.blank_id, tokenizer.unk_id) == (PAD_ID, BLANK_ID, UNK_ID)
    assert (tokenizer.bos_id, tokenizer.eos_id) == (BOS_ID, EOS_ID)
    assert [tokenizer.id_to_token(i) for i in range(4)] == ["<blank>", "<unk>", "<s>", "</s>"]
    for token_id in range(tokenizer.vocab_size):
        assert tokenizer.token_to_id(tokenizer.id_to_token(token_id)) == token_id
    # special ids decode to nothing
    assert tokenizer.decode([BOS_ID, *tokenizer.encode("the dog"), EOS_ID, PAD_ID]) == "the dog"


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_save_and_load_give_identical_ids(tmp_path, kind):
    tokenizer = train_tokenizer(TEXTS, kind=kind, vocab_size=60)
    path = tokenizer.save(tmp_path / "tok" / "tokenizer.json")
    loaded = load_tokenizer(path)
    assert type(loaded) is type(tokenizer)
    assert loaded.vocab_size == tokenizer.vocab_size
    for text in TEXTS + ["an unseen sentence with qxz"]:
        assert loaded.encode(text) == tokenizer.encode(text)
    assert load_tokenizer_dict(tokenizer.to_dict()).encode("fox") == tokenizer.encode("fox")


def test_bpe_merges_frequent_words_into_fewer_tokens_than_chars():
    char = train_tokenizer(TEXTS, kind="char")
    bpe = train_tokenizer(TEXTS, kind="bpe", vocab_size=120)
    assert len(bpe.encode("the quick brown fox")) < len(char.encode("the quick brown fox"))
    assert isinstance(bpe, BPETokenizer) and isinstance(char, CharTokenizer)


def test_unknown_characters_map_to_unk():
    tokenizer = train_tokenizer(["abc"], kind="char")
    assert tokenizer.encode("abz") == [tokenizer.encode("a")[0], tokenizer.encode("b")[0], UNK_ID]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer(["...", ""], kind="char")
    with pytest.raises(ValueError, match="unknown tokenizer kind 'words'"):
        train_tokenizer(TEXTS, kind="words")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json: not a saved mmembed tokenizer"):
        load_tokenizer(bad)
    with pytest.raises(ValueError, match="distinct single characters"):
        CharTokenizer(["a", "a"])


def test_character_view_spells_text_with_the_subword_vocabularys_characters():
    bpe = train_tokenizer(["the cat sat on the mat", "a hat"], kind="bpe", vocab_size=40)
    view = CharacterView(bpe)
    ids = view.encode("The  hat!")
    assert [view.id_to_token(i) for i in ids] == ["t", "h", "e", WORD_MARKER, "h", "a", "t"]
    assert view.decode(ids) == "the hat"
    # its own ids: the specials, then one per character of the base vocabulary, each with the
    # base id (the table row) of that character
    alphabet = sorted(set("the cat sat on the mat a hat") - {" "}) + [WORD_MARKER]
    assert view.vocab_size == len(SPECIAL_TOKENS) + len(alphabet) < bpe.vocab_size
    assert {bpe.id_to_token(row) for row in view.rows[len(SPECIAL_TOKENS):]} == set(alphabet)
    assert [view.rows[i] for i in ids] == [bpe.token_to_id(t) for t in "the"] + [
        bpe.token_to_id(WORD_MARKER)] + [bpe.token_to_id(t) for t in "hat"]  # fmt: skip
    assert view.encode("q") == [UNK_ID]  # a character the vocabulary never saw
    assert view.token_to_id(WORD_MARKER) == view.token_to_id(" ") == ids[3]
    assert load_tokenizer_dict(view.to_dict()).encode("the hat") == ids
    # of a character tokenizer it is the same tokenizer
    chars = train_tokenizer(["the hat"], kind="char")
    same = CharacterView(chars)
    assert same.encode("the hat") == chars.encode("the hat")
    assert same.rows == list(range(chars.vocab_size))
