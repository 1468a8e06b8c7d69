"""Video classification from an artifact: videos in, top-k labels with scores out.

Each video gives the run's evaluation clips (uniformly spaced, same frames, stride and size);
the clip graph scores them and the video's scores are the clip probabilities averaged, as in
evaluation. With the text head the class names are embeddings, so ``labels=[...]`` scores any
new names zero-shot: they are tokenised here and embedded by the exported label graph, which
reads the same shared table.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np
import torch

from mmembed.data.video_clips import ClipSampling
from mmembed.data.video_io import FALLBACK_FPS, VideoReadError, decode_clips, probe_video
from mmembed.data.video_transforms import VideoTransform
from mmembed.inference.inputs import VIDEO_EXTENSIONS, InputError
from mmembed.inference.predictor import Predictor
from mmembed.metrics.classification import video_level_scores
from mmembed.models.text_encoder import tokenize_texts

VideoInput = str | PathLike | np.ndarray | torch.Tensor


class VideoPredictor(Predictor):
    """``classify(videos, labels=None)``: see :meth:`classify`."""

    task = "video_classification"
    extensions = VIDEO_EXTENSIONS

    def __init__(self, artifact, **kwargs):
        super().__init__(artifact, **kwargs)
        preprocessing = self.config["preprocessing"]
        self.sampling = ClipSampling(**preprocessing["sampling"])
        self.num_clips: int = preprocessing["num_clips"]
        self.transform = VideoTransform(
            preprocessing["size"], False, mean=preprocessing["mean"], std=preprocessing["std"]
        )
        self.class_names: list[str] = self.config["class_names"]
        self.head: str = self.config["head"]
        self._label_embeddings: dict[tuple[str, ...], torch.Tensor] = {}
        if self.head == "text":
            stored = self.artifact.tensors("tensors.safetensors")["label_embeddings"]
            self._label_embeddings[tuple(self.class_names)] = stored.to(self.device)

    def read(self, source: VideoInput, fps: float = FALLBACK_FPS) -> torch.Tensor:
        """The evaluation clips (K, 3, T, H, W) of a video (see :func:`read_clips`)."""
        return read_clips(source, self.sampling, self.num_clips, self.transform, fps)

    def label_embeddings(self, labels: Sequence[str] | None = None) -> torch.Tensor:
        """Unit-norm embeddings (N, width) of ``labels`` (None: the training classes) through
        the exported shared table."""
        if self.head != "text":
            raise ValueError(
                "this model has a linear head: it scores only its training classes, not labels=..."
            )
        key = tuple(self.class_names if labels is None else labels)
        if key not in self._label_embeddings:
            ids, mask = tokenize_texts(self.tokenizer, key)
            (embeddings,) = self.graphs["labels"](ids.to(self.device), mask.to(self.device))
            self._label_embeddings[key] = embeddings
        return self._label_embeddings[key]

    def classify(
        self,
        videos: VideoInput | Sequence[VideoInput],
        labels: Sequence[str] | None = None,
        top_k: int = 5,
        batch_size: int = 8,
    ) -> list[list[dict[str, Any]]]:
        """Top-``top_k`` ``{"label", "score"}`` per video (files or decoded frames; one or a
        list; always a list back), scores = clip probabilities averaged over the video's
        clips. ``labels``: score these names zero-shot instead of the training classes (text
        head only)."""
        items = (
            [videos] if isinstance(videos, (str, PathLike, np.ndarray, torch.Tensor)) else videos
        )
        clips = [self.read(item) for item in items]
        records = self.run(clips, labels=labels, top_k=top_k, batch_size=batch_size)
        return [record["labels"] for record in records]

    def scores(
        self, clips: Sequence[torch.Tensor], labels: Sequence[str] | None = None
    ) -> torch.Tensor:
        """Video-level class probabilities (B, N) of read videos (:meth:`read`)."""
        names = self.class_names if labels is None else list(labels)
        batch = torch.stack(list(clips)).to(self.device)  # (B, K, 3, T, H, W)
        flat = batch.flatten(0, 1)
        if self.head == "text":
            (logits,) = self.graphs["clips"](flat, self.label_embeddings(names))
        else:
            if labels is not None:
                self.label_embeddings(labels)  # raises: no zero-shot with a linear head
            (logits,) = self.graphs["clips"](flat)
        return video_level_scores(logits.view(*batch.shape[:2], -1))

    def run(
        self,
        items: Sequence[torch.Tensor],
        labels: Sequence[str] | None = None,
        top_k: int = 5,
        batch_size: int | None = None,
    ) -> list[dict[str, Any]]:
        names = self.class_names if labels is None else list(labels)
        records: list[dict[str, Any]] = []
        size = batch_size or len(items)
        for start in range(0, len(items), size):
            probabilities = self.scores(items[start : start + size], labels)
            top = probabilities.topk(min(top_k, len(names)), dim=-1)
            for values, indices in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                records.append(
                    {
                        "labels": [
                            {"label": names[i], "score": value}
                            for value, i in zip(values, indices, strict=True)
                        ]
                    }
                )
        return records


def read_clips(
    source: VideoInput,
    sampling: ClipSampling,
    num_clips: int,
    transform: VideoTransform,
    fps: float = FALLBACK_FPS,
) -> torch.Tensor:
    """The evaluation clips (K, 3, T, H, W) of a video file, or of decoded frames: a uint8
    numpy array (T, H, W, 3) or tensor (T, 3, H, W) at ``fps`` (which only matters when the
    run sampled by ``target_fps``)."""
    if isinstance(source, (str, PathLike)):
        name = str(source)
        try:
            info = probe_video(source)
            num_frames, fps = info.num_frames, info.fps
        except VideoReadError as err:
            raise InputError(str(err)) from err
    else:
        name = "video array"
        frames = torch.as_tensor(source)
        if isinstance(source, np.ndarray) and frames.dim() == 4:
            frames = frames.permute(0, 3, 1, 2)
        if frames.dim() != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8:
            raise InputError(
                f"{name}: expected uint8 frames (T, H, W, 3) as numpy or (T, 3, H, W) as "
                f"torch, got {frames.dtype} {tuple(torch.as_tensor(source).shape)}"
            )
        num_frames = frames.shape[0]
    if num_frames < sampling.min_frames(fps):
        raise InputError(
            f"{name}: {num_frames} frames, shorter than one clip "
            f"({sampling.min_frames(fps)} frames)"
        )
    starts = sampling.uniform_starts(num_frames, fps, num_clips)
    clips = [sampling.indices(start, num_frames, fps) for start in starts]
    if isinstance(source, (str, PathLike)):
        try:
            decoded = decode_clips(source, clips)
        except VideoReadError as err:
            raise InputError(str(err)) from err
    else:
        decoded = torch.stack([frames[clip] for clip in clips])
    return transform(decoded)
