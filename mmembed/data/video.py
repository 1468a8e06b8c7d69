"""Video classification data: annotations -> checked videos -> decoded, augmented clips.

Batches are ``(clips, labels, video_indices)``. Training clips are (B, C, T, H, W), one random
clip per item. Evaluation clips are (B, K, C, T, H, W) with K = ``num_eval_clips`` uniformly
spaced clips per video (always 5-D per video, even for K = 1), so a model scores each clip and
averages over K for the video-level prediction; ``video_indices`` index the split's video list
(``dataset.videos``) and identify duplicates that a distributed sampler pads in.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import torch

from mmembed.data.datamodule import TaskDataModule
from mmembed.data.skips import SkippedItem, SkippedItemsWarning, warn_skipped
from mmembed.data.splits import SPLITS
from mmembed.data.video_annotations import (
    VideoAnnotationError,
    VideoEntry,
    folder_class_names,
    label_indices,
    read_class_list,
    read_video_csv,
    scan_class_folders,
)
from mmembed.data.video_clips import ClipSampling
from mmembed.data.video_io import VideoInfo, VideoReadError, decode_clips, probe_video
from mmembed.data.video_transforms import KINETICS_MEAN, KINETICS_STD, VideoTransform

log = logging.getLogger(__name__)

DEFAULT_SPLITS = {
    "csv": {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"},
    "folders": {"train": "train", "validation": "validation", "test": "test"},
}


class VideoSkipWarning(SkippedItemsWarning):
    """Videos were skipped (the message counts and names them)."""


@dataclass(frozen=True)
class VideoRecord:
    path: Path
    label: int
    num_frames: int
    fps: float


def index_videos(
    entries: Sequence[VideoEntry],
    class_names: Sequence[str],
    sampling: ClipSampling,
    source: str | PathLike,
    strict: bool = False,
    skipped: list[SkippedItem] | None = None,
) -> list[VideoRecord]:
    """Keep the entries whose video opens, has frames and is long enough for one clip.

    Unknown labels raise (the annotation is wrong). Unusable videos are skipped with one
    counted warning naming each file (``strict=True`` raises on the first instead) and
    appended to ``skipped``. Only container headers are read (about a millisecond per file),
    so this runs at setup; a file whose header is fine but whose frames do not decode is
    caught when it is loaded.
    """
    labels = label_indices(entries, class_names)
    kept, left_out = [], []
    for entry, label in zip(entries, labels, strict=True):
        try:
            info = probe_video(entry.path) if entry.path.stat().st_size else VideoInfo(0, 0.0)
        except VideoReadError as err:
            reason, kind = str(err).removeprefix(f"{entry.path}: "), "unreadable"
        else:
            needed = sampling.min_frames(info.fps)
            if info.num_frames == 0:
                reason, kind = "empty (no frames)", "empty"
            elif info.num_frames < needed:
                reason = f"too short ({info.num_frames} frames, a clip needs {needed})"
                kind = "too short"
            else:
                kept.append(VideoRecord(entry.path, label, info.num_frames, info.fps))
                continue
        where = entry.where if entry.where == str(entry.path) else f"{entry.where}: {entry.path}"
        item = SkippedItem(where, kind, reason)
        if strict:
            raise VideoReadError(str(item))
        left_out.append(item)
    warn_skipped(source, left_out, len(entries), "videos", VideoSkipWarning)
    if skipped is not None:
        skipped.extend(left_out)
    return kept


class VideoClassificationDataset(torch.utils.data.Dataset):
    """Items ``(clip, label, video_index)``.

    ``train=True``: one random clip (C, T, H, W) per item; the dataset lists each video
    ``clips_per_video`` times, so an epoch sees that many random clips of it.
    ``train=False``: ``num_eval_clips`` uniformly spaced clips (K, C, T, H, W), decoded in one
    pass over the video.

    A video that fails to decode here (its header was fine at indexing) is replaced by the next
    readable one with a warning naming it; ``strict=True`` raises instead.
    """

    def __init__(
        self,
        videos: Sequence[VideoRecord],
        sampling: ClipSampling,
        transform: VideoTransform | None = None,
        train: bool = True,
        num_eval_clips: int = 1,
        clips_per_video: int = 1,
        strict: bool = False,
    ):
        if not videos:
            raise ValueError("VideoClassificationDataset needs at least one video")
        if num_eval_clips < 1 or clips_per_video < 1:
            raise ValueError("num_eval_clips and clips_per_video must be >= 1")
        self.videos = list(videos)
        self.sampling = sampling
        self.transform = transform
        self.train = train
        self.num_eval_clips = num_eval_clips
        self.clips_per_video = clips_per_video if train else 1
        self.strict = strict
        self.unreadable: set[int] = set()

    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    def clip_indices(self, video_index: int) -> list[list[int]]:
        """Frame indices of the clip(s) the next item of this video uses."""
        video = self.videos[video_index]
        if self.train:
            starts = [self.sampling.random_start(video.num_frames, video.fps)]
        else:
            starts = self.sampling.uniform_starts(video.num_frames, video.fps, self.num_eval_clips)
        return [self.sampling.indices(s, video.num_frames, video.fps) for s in starts]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        first = index % len(self.videos)
        for attempt in range(len(self.videos)):
            video_index = (first + attempt) % len(self.videos)
            if video_index in self.unreadable:
                continue
            try:
                return self._load(video_index)
            except VideoReadError as err:
                if self.strict:
                    raise
                self.unreadable.add(video_index)
                warnings.warn(
                    f"{err}; using the next video instead", VideoSkipWarning, stacklevel=2
                )
        raise VideoReadError(f"none of the {len(self.videos)} videos could be decoded")

    def _load(self, video_index: int) -> tuple[torch.Tensor, int, int]:
        frames = decode_clips(self.videos[video_index].path, self.clip_indices(video_index))
        # Without a transform the layout is still (..., C, T, H, W), as uint8.
        frames = self.transform(frames) if self.transform else frames.movedim(-4, -3)
        clip = frames[0] if self.train else frames
        return clip, self.videos[video_index].label, video_index


class VideoDataModule(TaskDataModule):
    """Train/validation/test videos in one folder, in either annotation layout.

    Args:
        data_dir: the dataset folder.
        layout: ``"csv"`` (``path,label`` files; relative paths resolve against the CSV's
            folder) or ``"folders"`` (``<split>/<class>/<video>``; ``"."`` as a split name
            means ``data_dir`` itself).
        train_split, val_split, test_split: CSV file or split folder names inside
            ``data_dir`` (or absolute). Defaults: ``train.csv``/``validation.csv``/``test.csv``
            or folders ``train``/``validation``/``test``.
        classes_file: for the CSV layout, a file in ``data_dir`` listing the classes in label
            order; without it, the sorted labels of the training CSV. The folder layout uses
            the sorted class folders of the training split (underscores read as spaces).
        frames_per_clip, frame_stride, target_fps, loop_short_videos: see
            :class:`mmembed.data.video_clips.ClipSampling`. The defaults (8 frames, stride 2)
            see a whole 16-frame default-corpus video per clip; with stride 1 the same small
            models learn about half as fast.
        train_clips_per_video: random clips drawn per video per training epoch.
        num_eval_clips: uniformly spaced clips per video at validation/test.
        size: output side in pixels (random resized crop for training, short-side resize +
            centre crop for evaluation).
        crop_scale: area range of the training crop.
        horizontal_flip_p: training flip probability; keep 0 when direction is in the label.
        mean, std: the normalisation of the clips (Kinetics' by default, as torchvision's
            video backbones expect); :attr:`image_normalization` reports them.
        batch_size, eval_batch_size, num_workers, strict, seed: see
            :class:`~mmembed.data.datamodule.TaskDataModule`.
    """

    def __init__(
        self,
        data_dir: str | PathLike,
        layout: str = "csv",
        train_split: str | None = None,
        val_split: str | None = None,
        test_split: str | None = None,
        classes_file: str = "classes.txt",
        frames_per_clip: int = 8,
        frame_stride: int = 2,
        target_fps: float | None = None,
        loop_short_videos: bool = False,
        train_clips_per_video: int = 1,
        num_eval_clips: int = 2,
        size: int = 64,
        crop_scale: Sequence[float] = (0.8, 1.0),
        horizontal_flip_p: float = 0.0,
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        strict: bool = False,
        seed: int = 0,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers, strict=strict, seed=seed)
        if layout not in DEFAULT_SPLITS:
            raise ValueError(f"layout must be 'csv' or 'folders', got {layout!r}")
        self.data_dir = Path(data_dir)
        self.layout = layout
        names = dict(zip(SPLITS, (train_split, val_split, test_split), strict=True))
        self.split_paths = {
            split: self.data_dir / (names[split] or DEFAULT_SPLITS[layout][split])
            for split in SPLITS
        }
        self.classes_file = classes_file
        self.sampling = ClipSampling(frames_per_clip, frame_stride, target_fps, loop_short_videos)
        self.train_clips_per_video = train_clips_per_video
        self.num_eval_clips = num_eval_clips
        self.image_normalization = dict(mean=tuple(mean), std=tuple(std))
        self.transforms = {
            True: VideoTransform(
                size, True, tuple(crop_scale), horizontal_flip_p, **self.image_normalization
            ),
            False: VideoTransform(size, False, **self.image_normalization),
        }
        self._class_names: list[str] | None = None

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (cheap: reads annotations, not videos)."""
        if self._class_names is None:
            self._class_names = self._read_class_names()
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _read_class_names(self) -> list[str]:
        if self.layout == "folders":
            return folder_class_names(self.split_paths["train"])
        classes_file = self.data_dir / self.classes_file
        if classes_file.is_file():
            return read_class_list(classes_file)
        names = sorted({entry.label for entry in read_video_csv(self.split_paths["train"])})
        if not names:
            raise VideoAnnotationError(f"{self.split_paths['train']}: no videos")
        return names

    def _entries(self, split: str) -> list[VideoEntry]:
        path = self.split_paths[split]
        return read_video_csv(path) if self.layout == "csv" else scan_class_folders(path)

    def build_dataset(self, split: str) -> VideoClassificationDataset:
        source = self.split_paths[split]
        videos = index_videos(
            self._entries(split),
            self.class_names,
            self.sampling,
            source,
            self.strict,
            skipped=self.skipped[split],
        )
        if not videos:
            raise ValueError(f"{source}: no usable videos")
        train = split == "train"
        log.info("%s: %d videos from %s", split, len(videos), source)
        return VideoClassificationDataset(
            videos,
            self.sampling,
            self.transforms[train],
            train=train,
            num_eval_clips=self.num_eval_clips,
            clips_per_video=self.train_clips_per_video,
            strict=self.strict,
        )

    def training_texts(self) -> list[str]:
        """The class names: the texts a zero-shot text tower embeds."""
        return list(self.class_names)
