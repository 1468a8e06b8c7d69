"""The data of the multimodal task: the single tasks' data modules side by side, one tokenizer.

Training mixes them with Lightning's ``CombinedLoader`` in ``max_size_cycle`` mode: every step
gets a batch of every part (``{"speech": ..., "captions": ..., "video": ..., "spoken": ...}``),
the shorter loaders starting over until the longest is done. Each part's training loader shards
itself under DDP, as it does alone. Validation and test go through every part's loaders one
after the other (Lightning's ``dataloader_idx``), named by :attr:`eval_sets`.

Parts (each one of the existing data modules, configured as it is alone):

- ``speech``: transcribed speech (:class:`~mmembed.data.speech.SpeechDataModule`);
- ``captions``: captioned images (:class:`~mmembed.data.coco.CocoCaptionDataModule`);
- ``video``: labelled videos (:class:`~mmembed.data.video.VideoDataModule`);
- ``spoken``: spoken captions, audio paired with the images' captions (a
  ``SpeechDataModule`` over :mod:`mmembed.datagen.spoken_captions`' manifests);
- ``spoken_labels``: spoken class names, evaluation only (optional).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import lightning as L
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset

from mmembed.data.coco import CocoCaptionDataModule
from mmembed.data.datamodule import STAGE_SPLITS, TaskDataModule
from mmembed.data.skips import SKIPPED, SkippedItem
from mmembed.data.speech import SpeechDataModule
from mmembed.data.video import VideoDataModule
from mmembed.text.coverage import TextCoverage
from mmembed.text.tokenizers import CharacterView

SPEECH_PARTS = ("speech", "spoken", "spoken_labels")
TRAINED_PARTS = ("speech", "captions", "video", "spoken")
SPEECH_UNITS = ("char", "subword")
_Value = TypeVar("_Value")


class MultimodalDataModule(L.LightningDataModule):
    """Speech, captioned images, labelled videos and spoken captions, for one model.

    Args:
        speech, captions, video, spoken: the parts' data modules (see the module docstring).
        spoken_labels: spoken class names scored against the videos (None: not scored).
        speech_units: what the speech parts' token targets are: ``"char"``, the characters
            of the shared tokenizer's vocabulary (:class:`~mmembed.text.CharacterView`: CTC on
            characters, as the single-task recogniser), or ``"subword"``, its tokens.
        train_mode: the ``CombinedLoader`` mode of training (``max_size_cycle``: a batch of
            every part each step; ``min_size`` stops at the shortest part).
        num_workers: loader workers of every part (None: each part's own setting).
    """

    def __init__(
        self,
        speech: SpeechDataModule,
        captions: CocoCaptionDataModule,
        video: VideoDataModule,
        spoken: SpeechDataModule,
        spoken_labels: SpeechDataModule | None = None,
        speech_units: str = "char",
        train_mode: str = "max_size_cycle",
        num_workers: int | None = None,
    ):
        super().__init__()
        if speech_units not in SPEECH_UNITS:
            raise ValueError(f"speech_units must be one of {SPEECH_UNITS}, got {speech_units!r}")
        if train_mode not in ("max_size_cycle", "min_size"):
            raise ValueError(
                f"train_mode must be 'max_size_cycle' or 'min_size', got {train_mode!r}"
            )
        parts = {"speech": speech, "captions": captions, "video": video, "spoken": spoken}
        if spoken_labels is not None:
            parts["spoken_labels"] = spoken_labels
        self.parts: dict[str, TaskDataModule] = parts
        if num_workers is not None:
            for part in parts.values():
                part.num_workers = num_workers
        self.speech_units = speech_units
        self.train_mode = train_mode
        self.tokenizer: Any = None

    # --- the TaskDataModule contract, over the parts ------------------------------------------

    def eval_sets(self, stage: str) -> list[tuple[str, str]]:
        """``(part, split)`` of every evaluation loader of ``stage`` ("validate" or "test"), in
        loader order."""
        if stage == "test":
            return [(name, split) for name, part in self.parts.items()
                    for split in part.test_split_names]  # fmt: skip
        return [(name, "validation") for name in self.parts]

    @property
    def test_split_names(self) -> list[str]:
        return [f"{name}/{split}" for name, split in self.eval_sets("test")]

    def training_texts(self) -> list[str]:
        """Transcripts, captions and class names: the one tokenizer is trained on all of them
        (the spoken captions read the same captions and class names)."""
        return [
            *self.parts["speech"].training_texts(),
            *self.parts["captions"].training_texts(),
            *self.parts["video"].training_texts(),
        ]

    def set_tokenizer(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        speech_tokenizer = CharacterView(tokenizer) if self.speech_units == "char" else tokenizer
        for name, part in self.parts.items():
            part.set_tokenizer(speech_tokenizer if name in SPEECH_PARTS else tokenizer)

    @property
    def skipped(self) -> dict[str, list[SkippedItem]]:
        """Every part's skipped items, under ``<part>/<split>``."""
        return _by_part({name: part.skipped for name, part in self.parts.items()})

    @property
    def text_coverage(self) -> dict[str, TextCoverage]:
        """Every part's unrepresented text, under ``<part>/<split>``."""
        return _by_part({name: part.text_coverage for name, part in self.parts.items()})

    def dataset(self, name: str) -> Dataset:
        """The data set ``<part>/<split>`` (the names :attr:`skipped` reports under)."""
        part, split = self._part_split(name)
        return part.dataset(split)

    def _splits(self, stage: str | None) -> list[tuple[str, str]]:
        splits = [(name, "train") for name in TRAINED_PARTS] if stage in (None, "fit") else []
        if stage in STAGE_SPLITS or stage is None:
            splits += self.eval_sets("validate")
        if stage in ("test", None):
            splits += self.eval_sets("test")
        return splits

    def setup(self, stage: str | None = None) -> None:
        for name, split in self._splits(stage):
            self.parts[name].dataset(split)

    def prepare_splits(self, fit: bool = True, test: bool = True) -> None:
        """Index every split of every part that fitting and testing will read (a missing file
        fails before the first step; see :meth:`TaskDataModule.prepare_splits`)."""
        splits = self._splits("fit") * fit + self._splits("test") * test
        for name, split in dict.fromkeys(splits):
            self.parts[name].dataset(split)

    # --- items that fail at load time (each part keeps its own) -------------------------------

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Take the items that failed to load out of every part's batch and record them with
        their part (training batches hold a batch of every part; evaluation loaders are one
        part's split each, named by :meth:`eval_sets`)."""
        trainer = self.trainer
        if trainer is not None and trainer.training:
            for name, part_batch in batch.items():
                self._take_skips(name, "train", part_batch)
        elif trainer is not None and (trainer.validating or trainer.sanity_checking):
            self._take_skips(*self.eval_sets("validate")[dataloader_idx], batch)
        elif trainer is not None and trainer.testing:
            self._take_skips(*self.eval_sets("test")[dataloader_idx], batch)
        return batch

    def _take_skips(self, name: str, split: str, batch: Any) -> None:
        if isinstance(batch, dict) and SKIPPED in batch:
            failed = batch.pop(SKIPPED)
            if failed:
                self.parts[name].record_load_skips(split, failed)

    def record_load_skips(self, name: str, items: Iterable[SkippedItem]) -> None:
        """Record load-time skips of ``<part>/<split>`` (gathered from other ranks)."""
        part, split = self._part_split(name)
        part.record_load_skips(split, items)

    def take_unreported_skips(self) -> dict[str, list[SkippedItem]]:
        """Every part's load-time skips since the last call, under ``<part>/<split>``."""
        return _by_part({name: part.take_unreported_skips() for name, part in self.parts.items()})

    def _part_split(self, name: str) -> tuple[TaskDataModule, str]:
        part, _, split = name.partition("/")
        if part not in self.parts or not split:
            raise KeyError(f"{name!r} is not <part>/<split> with a part of {list(self.parts)}")
        return self.parts[part], split

    def train_dataloader(self) -> CombinedLoader:
        loaders = {name: self.parts[name].loader("train") for name in TRAINED_PARTS}
        return CombinedLoader(loaders, mode=self.train_mode)

    def val_dataloader(self) -> list[DataLoader]:
        return [self.parts[name].loader(split) for name, split in self.eval_sets("validate")]

    def test_dataloader(self) -> list[DataLoader]:
        return [self.parts[name].loader(split) for name, split in self.eval_sets("test")]


def _by_part(per_part: Mapping[str, Mapping[str, _Value]]) -> dict[str, _Value]:
    """``{part: {split: value}}`` -> ``{"<part>/<split>": value}``."""
    return {
        f"{name}/{split}": value
        for name, splits in per_part.items()
        for split, value in splits.items()
    }
