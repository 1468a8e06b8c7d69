"""Builders of the bad inputs real data sets hold, one file each, for the tests of every data
path (and of features to come): audio with NaN samples or frames that do not decode, images
whose header is fine but whose pixels are not, 16-bit images, videos that probe but do not
decode, text in another encoding or script, a full disk, a folder nobody may write to.

Each builder writes ``path`` (creating its folder) and returns it.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np
import soundfile
from PIL import Image

# Transcripts and captions a tokenizer trained on English letters cannot represent.
CJK_TEXT = "你好世界"  # nothing survives normalisation
MIXED_TEXT = "the cat sat in 東京"  # loses two characters
DIGIT_TEXT = "room 7 is open"  # a digit, outside a vocabulary trained on letters only


def _parent(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# --- audio -------------------------------------------------------------------------------------


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    """A quiet sine tone (float32 mono)."""
    return (0.1 * np.sin(np.arange(int(seconds * rate)) * 0.05)).astype("float32")


def write_wav(path: Path, seconds: float = 0.5, rate: int = 16000, samples=None) -> Path:
    """A valid PCM WAV (a tone, or ``samples``)."""
    path = _parent(path)
    soundfile.write(path, tone(seconds, rate) if samples is None else samples, rate)
    return path


def nonfinite_wav(path: Path, value: float = float("nan"), seconds: float = 0.5,
                  rate: int = 16000, samples=None) -> Path:  # fmt: skip
    """A 32-bit float WAV (the format that can hold them) with one NaN or infinite sample in
    the middle; its header is perfectly normal."""
    samples = (tone(seconds, rate) if samples is None else np.asarray(samples, "float32")).copy()
    samples[len(samples) // 2] = value
    soundfile.write(_parent(path), samples, rate, subtype="FLOAT")
    return path


def corrupt_flac(path: Path, seconds: float = 0.5, rate: int = 16000, seed: int = 0) -> Path:
    """A FLAC whose header (rate, frame count) is intact but whose frames are noise: indexing
    accepts it, decoding fails ("flac decoder lost sync")."""
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(seconds, rate), rate, format="FLAC")
    data = bytearray(buffer.getvalue())
    start = len(data) // 3
    data[start:] = np.random.default_rng(seed).bytes(len(data) - start)
    _parent(path).write_bytes(bytes(data))
    return path


# --- any file ----------------------------------------------------------------------------------


def garbage(path: Path, size: int = 2000, seed: int = 0) -> Path:
    """Random bytes under a media file name (no header at all)."""
    _parent(path).write_bytes(np.random.default_rng(seed).bytes(size))
    return path


def truncated_copy(source: Path, path: Path, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of ``source``'s bytes."""
    data = Path(source).read_bytes()
    _parent(path).write_bytes(data[: int(len(data) * fraction)])
    return path


def latin1_text(path: Path, text: str) -> Path:
    """``text`` encoded as Latin-1 (not UTF-8 when it holds accents)."""
    _parent(path).write_bytes(text.encode("latin-1"))
    return path


def write_jsonl(path: Path, records: Sequence[dict]) -> Path:
    _parent(path).write_text(
        "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records),
        encoding="utf-8",
    )
    return path


# --- images ------------------------------------------------------------------------------------


def rgb_png(path: Path, colour=(200, 30, 30), size: int = 24) -> Path:
    Image.new("RGB", (size, size), colour).save(_parent(path))
    return path


def grey16_png(path: Path, size: int = 32) -> Path:
    """A 16-bit greyscale PNG: a left-to-right ramp from 0 to 65535 (Pillow mode ``I;16``).
    Converted naively to RGB, all but the darkest column clips to white."""
    ramp = np.linspace(0, 65535, size).round().astype(np.uint16)
    Image.fromarray(np.tile(ramp, (size, 1))).save(_parent(path))
    return path


def truncated_jpeg(path: Path, size: int = 32, seed: int = 0) -> Path:
    """A JPEG cut halfway through its compressed scan: Pillow's header check (``verify``)
    passes, decoding fails ("image file is truncated")."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    data = buffer.getvalue()
    scan = data.index(b"\xff\xda")  # start of scan: every header segment comes before it
    _parent(path).write_bytes(data[: scan + (len(data) - scan) // 2])
    return path


# --- video -------------------------------------------------------------------------------------


def undecodable_mp4(path: Path, frames: np.ndarray, fps: int = 8) -> Path:
    """An mp4 whose header (moov, written first) is intact, so probing finds every frame, but
    whose frame data is zeroed: decoding fails. ``frames``: uint8 (T, H, W, 3)."""
    # faststart moves the header in front of the frames (it rewrites the file: no BytesIO)
    with av.open(str(_parent(path)), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = bytearray(Path(path).read_bytes())
    body = data.index(b"mdat") + 4
    data[body:] = bytes(len(data) - body)
    Path(path).write_bytes(bytes(data))
    return path


# --- the machine -------------------------------------------------------------------------------


@contextlib.contextmanager
def disk_full(limit_bytes: int = 0) -> Iterator[None]:
    """Every write that would make a file larger than ``limit_bytes`` fails, as on a full disk
    (``RLIMIT_FSIZE``: ``OSError`` "File too large" instead of "No space left", through the same
    code paths). In-process, no root needed; restored on exit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` (itself included) with its size and modification time: equal
    before and after means nothing was written there. Works as root, where permissions do not
    stop writes."""
    folder = Path(folder)
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in [folder, *folder.rglob("*")]
    }


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` and everything in it made read-only (for non-root users) for the block."""
    paths = [Path(folder), *Path(folder).rglob("*")]
    modes = {path: path.stat().st_mode for path in paths}
    for path in paths:
        path.chmod(modes[path] & ~0o222)
    try:
        yield Path(folder)
    finally:
        for path in reversed(paths):
            path.chmod(modes[path])
