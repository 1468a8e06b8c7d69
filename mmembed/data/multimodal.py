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

from typing import Any

import lightning as L
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader

from mmembed.data.coco import CocoCaptionDataModule
from mmembed.data.datamodule import STAGE_SPLITS, TaskDataModule
from mmembed.data.skips import SkippedItem
from mmembed.data.speech import SpeechDataModule
from mmembed.data.video import VideoDataModule
from mmembed.text.tokenizers import CharacterView

SPEECH_PARTS = ("speech", "spoken", "spoken_labels")
TRAINED_PARTS = ("speech", "captions", "video", "spoken")
SPEECH_UNITS = ("char", "subword")


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
        return {
            f"{name}/{split}": items
            for name, part in self.parts.items()
            for split, items in part.skipped.items()
        }

    def setup(self, stage: str | None = None) -> None:
        splits = [(name, "train") for name in TRAINED_PARTS] if stage in (None, "fit") else []
        if stage in STAGE_SPLITS or stage is None:
            splits += self.eval_sets("validate")
        if stage in ("test", None):
            splits += self.eval_sets("test")
        for name, split in splits:
            self.parts[name].dataset(split)

    def train_dataloader(self) -> CombinedLoader:
        loaders = {name: self.parts[name].loader("train") for name in TRAINED_PARTS}
        return CombinedLoader(loaders, mode=self.train_mode)

    def val_dataloader(self) -> list[DataLoader]:
        return [self.parts[name].loader(split) for name, split in self.eval_sets("validate")]

    def test_dataloader(self) -> list[DataLoader]:
        return [self.parts[name].loader(split) for name, split in self.eval_sets("test")]
