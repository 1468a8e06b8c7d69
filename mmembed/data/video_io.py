"""Reading videos with PyAV: a cheap header probe and decoding selected frames to uint8."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike

import av
import numpy as np
import torch

# Used when a container states no frame rate at all (only matters with a target fps).
FALLBACK_FPS = 25.0


class VideoReadError(RuntimeError):
    """A video file that cannot be opened or decoded; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float


def probe_video(path: str | PathLike) -> VideoInfo:
    """Frame count and rate from the container header, without decoding pixels.

    Containers that do not store a frame count (some mkv/webm) fall back to duration x rate,
    then to counting packets. Raises :class:`VideoReadError` if the file cannot be opened or
    has no video stream.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else FALLBACK_FPS
            frames = stream.frames
            if frames <= 0 and stream.duration and stream.time_base:
                frames = round(float(stream.duration * stream.time_base) * fps)
            if frames <= 0:
                frames = sum(1 for packet in container.demux(stream) if packet.size)
    except VideoReadError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoReadError(f"{path}: cannot open ({type(err).__name__}: {err})") from err
    return VideoInfo(frames, fps)


def decode_frames(path: str | PathLike, indices: Sequence[int]) -> torch.Tensor:
    """Frames ``indices`` of the video as uint8 (len(indices), C, H, W), RGB.

    Decodes sequentially from the start and stops after the last wanted frame (no seeking:
    exact frame indices in every container, at a cost linear in the clip's position, which is
    fine for clip-length videos). If the header over-stated the frame count, indices past the
    real end get the last frame.
    """
    wanted = set(indices)
    last = max(indices)
    frames: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for number, frame in enumerate(container.decode(stream)):
                if number in wanted:
                    frames[number] = frame.to_ndarray(format="rgb24")
                if number >= last:
                    break
    except (av.FFmpegError, OSError, ValueError, IndexError) as err:
        raise VideoReadError(f"{path}: cannot decode ({type(err).__name__}: {err})") from err
    if not frames:
        raise VideoReadError(f"{path}: no frames decoded")
    end = max(frames)
    stacked = np.stack([frames[min(index, end)] for index in indices])
    return torch.from_numpy(stacked).permute(0, 3, 1, 2)


def decode_clips(path: str | PathLike, clips: Sequence[Sequence[int]]) -> torch.Tensor:
    """Clips of the video given as frame indices, decoded in one pass: uint8
    (len(clips), frames per clip, C, H, W), RGB."""
    unique = sorted({index for clip in clips for index in clip})
    decoded = decode_frames(path, unique)
    position = {frame: row for row, frame in enumerate(unique)}
    return torch.stack([decoded[[position[i] for i in clip]] for clip in clips])
