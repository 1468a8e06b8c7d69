"""Video classification data: annotations -> checked videos -> decoded, augmented clips.

Batches are dicts: ``clips``, ``labels``, ``video_indices``, ``paths`` and ``skipped``.
Training clips are (B, C, T, H, W), one random clip per item. Evaluation clips are
(B, K, C, T, H, W) with K = ``num_eval_clips`` uniformly spaced clips per video (always 5-D per
video, even for K = 1), so a model scores each clip and averages over K for the video-level
prediction; ``video_indices`` index the split's video list (``dataset.videos``) and identify
duplicates that a distributed sampler pads in. A video whose header was fine but whose frames
do not decode is left out of its batch and listed in ``skipped`` (never replaced by another
video, which would score that one twice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

import torch

from mmembed.data.datamodule import TaskDataModule
from mmembed.data.skips import (
    PATHS,
    SKIPPED,
    SkippedItem,
    SkippedItemsWarning,
    empty_batch,
    warn_skipped,
    without_failed,
)
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
    where: str = ""  # its annotation line and file, for reports


class VideoItem(NamedTuple):
    clip: torch.Tensor  # (C, T, H, W) for training, (K, C, T, H, W) for evaluation
    label: int
    video_index: int
    path: str


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
        where = entry.where if entry.where == str(entry.path) else f"{entry.where}: {entry.path}"
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
                kept.append(VideoRecord(entry.path, label, info.num_frames, info.fps, where))
                continue
        item = SkippedItem(where, kind, reason)
        if strict:
            raise VideoReadError(str(item))
        left_out.append(item)
    warn_skipped(source, left_out, len(entries), "videos", VideoSkipWarning)
    if skipped is not None:
        skipped.extend(left_out)
    return kept


class VideoClassificationDataset(torch.utils.data.Dataset):
    """Items :class:`VideoItem` ``(clip, label, video_index, path)``.

    ``train=True``: one random clip (C, T, H, W) per item; the dataset lists each video
    ``clips_per_video`` times, so an epoch sees that many random clips of it.
    ``train=False``: ``num_eval_clips`` uniformly spaced clips (K, C, T, H, W), decoded in one
    pass over the video.

    A video that fails to decode here (its header was fine at indexing) gives a
    :class:`~mmembed.data.skips.SkippedItem` naming it, which :func:`collate_videos` leaves out
    of the batch; ``strict=True`` raises :class:`VideoReadError` instead.
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

    def __getitem__(self, index: int) -> VideoItem | SkippedItem:
        video_index = index % len(self.videos)
        video = self.videos[video_index]
        try:
            return self._load(video_index)
        except VideoReadError as err:
            where = video.where or str(video.path)
            reason = str(err).removeprefix(f"{video.path}: ")
            if self.strict:
                raise VideoReadError(f"{where}: {reason}") from err
            return SkippedItem(where, "unreadable", reason)

    def _load(self, video_index: int) -> VideoItem:
        frames = decode_clips(self.videos[video_index].path, self.clip_indices(video_index))
        # Without a transform the layout is still (..., C, T, H, W), as uint8.
        frames = self.transform(frames) if self.transform else frames.movedim(-4, -3)
        clip = frames[0] if self.train else frames
        video = self.videos[video_index]
        return VideoItem(clip, video.label, video_index, str(video.path))


def collate_videos(items: Sequence[VideoItem | SkippedItem]) -> dict[str, Any]:
    """Stacked ``clips``, ``labels`` and ``video_indices``, the ``paths``, and ``skipped``:
    the items that failed to load, left out of the batch."""
    items, skipped = without_failed(items)
    if not items:
        return empty_batch(skipped)
    return {
        "clips": torch.stack([item.clip for item in items]),
        "labels": torch.tensor([item.label for item in items], dtype=torch.long),
        "video_indices": torch.tensor([item.video_index for item in items], dtype=torch.long),
        PATHS: [item.path for item in items],
        SKIPPED: skipped,
    }


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
        extra_test_splits: more test sets, name -> CSV file or split folder (e.g.
            ``{"test_ood": "test_ood.csv"}``); ``test_dataloader`` then returns one loader per
            set, the main test set first, in the order :attr:`test_split_names` names them.
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
        color_jitter, grayscale_p, erasing_p: training brightness/contrast/saturation jitter
            strength, greyscale probability and random-erasing probability (all off by default).
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
        extra_test_splits: Mapping[str, str] | None = None,
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
        color_jitter: float = 0.0,
        grayscale_p: float = 0.0,
        erasing_p: float = 0.0,
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
        self.split_paths.update(
            self.add_extra_tests("extra_test_splits", extra_test_splits, self.data_dir)
        )
        self.classes_file = classes_file
        self.sampling = ClipSampling(frames_per_clip, frame_stride, target_fps, loop_short_videos)
        self.train_clips_per_video = train_clips_per_video
        self.num_eval_clips = num_eval_clips
        self.image_normalization = dict(mean=tuple(mean), std=tuple(std))
        self.transforms = {
            True: VideoTransform(
                size,
                True,
                tuple(crop_scale),
                horizontal_flip_p,
                color_jitter=color_jitter,
                grayscale_p=grayscale_p,
                erasing_p=erasing_p,
                **self.image_normalization,
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

    @property
    def class_counts(self) -> list[int]:
        """Training videos per class, in label order."""
        counts = [0] * self.num_classes
        for video in self.dataset("train").videos:
            counts[video.label] += 1
        return counts

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

    def text_items(self, split: str) -> list[tuple[str, str]]:
        # every split shares the training split's class names
        return [(f"class {name!r}", name) for name in self.class_names] if split == "train" else []

    def collate_fn(self, split: str) -> Callable:
        return collate_videos
