"""Which frames make a clip: random clips for training, K uniformly spaced clips for evaluation.

A clip is ``frames_per_clip`` frames taken every ``step`` frames, where ``step`` is
``frame_stride`` or, with ``target_fps``, ``video_fps / target_fps`` (so a clip lasts the same
time whatever the video's rate; a fractional step takes the frame at or before each instant).
It spans ``(frames_per_clip - 1) * step + 1`` frames.

Videos shorter than one clip are too short and get skipped by the index pass, unless
``loop_short_videos`` is set: then any non-empty video is used and the clip wraps around to the
video's start (frame indices modulo the length), which keeps the motion's speed intact (unlike
padding with a repeated last frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClipSampling:
    frames_per_clip: int = 8
    frame_stride: int = 1
    target_fps: float | None = None
    loop_short_videos: bool = False

    def __post_init__(self):
        if self.frames_per_clip < 1 or self.frame_stride < 1:
            raise ValueError(
                f"frames_per_clip and frame_stride must be >= 1, got {self.frames_per_clip} and "
                f"{self.frame_stride}"
            )
        if self.target_fps is not None and self.target_fps <= 0:
            raise ValueError(f"target_fps must be positive, got {self.target_fps}")

    def step(self, fps: float) -> float:
        return fps / self.target_fps if self.target_fps else float(self.frame_stride)

    def span(self, fps: float) -> int:
        """Frames covered by one clip, first to last inclusive."""
        return self._offsets(fps)[-1] + 1

    def min_frames(self, fps: float) -> int:
        """The shortest video this sampling can use."""
        return 1 if self.loop_short_videos else self.span(fps)

    def _offsets(self, fps: float) -> list[int]:
        step = self.step(fps)
        # The small epsilon keeps exact multiples (e.g. 30/15 * 3) from flooring one frame short.
        return [math.floor(i * step + 1e-6) for i in range(self.frames_per_clip)]

    def indices(self, start: int, num_frames: int, fps: float) -> list[int]:
        """Frame indices of the clip starting at ``start``."""
        indices = [start + offset for offset in self._offsets(fps)]
        if indices[-1] >= num_frames:
            if not self.loop_short_videos:
                raise ValueError(
                    f"a clip of {self.span(fps)} frames from frame {start} does not fit in "
                    f"{num_frames} frames"
                )
            indices = [index % num_frames for index in indices]
        return indices

    def random_start(
        self, num_frames: int, fps: float, generator: torch.Generator | None = None
    ) -> int:
        """A uniformly random start at which the whole clip fits (0 if the video is short)."""
        last_start = max(num_frames - self.span(fps), 0)
        return int(torch.randint(last_start + 1, (1,), generator=generator))

    def uniform_starts(self, num_frames: int, fps: float, num_clips: int) -> list[int]:
        """``num_clips`` evenly spaced starts; from the first frame to the last clip ending on
        the last frame, so together they cover the video. One clip is centred."""
        last_start = max(num_frames - self.span(fps), 0)
        if num_clips == 1:
            return [last_start // 2]
        return [round(k * last_start / (num_clips - 1)) for k in range(num_clips)]
