"""COCO captions: parse and validate the JSON, datasets, a tokenising collate, a DataModule.

A COCO captions file holds ``images[{id, file_name, ...}]`` and
``annotations[{image_id, caption, ...}]``; ``file_name`` is relative to an images folder.
Structural problems (invalid JSON, a missing key, an annotation for an unknown image, an image
file that does not exist) fail at once naming the file and the entry: they mean the data set is
wrong, and training on the rest would silently drop data. An image file that exists but cannot
be decoded is skipped with one counted warning (``strict=True`` raises instead): large scraped
sets usually hold a few of those. One whose header is fine but whose pixels do not decode (a
truncated JPEG) is skipped the same way when it is loaded: the batch goes on without it (see
:mod:`mmembed.data.skips`), and evaluation scores only the images that loaded.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mmembed.data.datamodule import TaskDataModule
from mmembed.data.group_sampler import GroupCappedSampler, average_hash
from mmembed.data.image_transforms import IMAGENET_MEAN, IMAGENET_STD
from mmembed.data.image_transforms import eval_transform as default_eval_transform
from mmembed.data.image_transforms import train_transform as default_train_transform
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
from mmembed.data.text_files import read_text
from mmembed.text.tokenizers import normalize_text

__all__ = [
    "CaptionSample",
    "CaptionTokenizer",
    "CaptionedImage",
    "CocoCaptionDataModule",
    "CocoCaptionDataset",
    "CocoFormatError",
    "UnreadableImageError",
    "UnreadableImageWarning",
    "collate_captions",
    "load_coco_captions",
]

log = logging.getLogger(__name__)

# Pillow modes whose samples are wider than 8 bits, and their bit depth: converting them to RGB
# clips every value above 255 instead of scaling (a 16-bit greyscale PNG turns white).
_DEEP_MODES = {"I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32}


class CocoFormatError(ValueError):
    """A COCO captions file that cannot be used; the message names the file and entry."""


class UnreadableImageError(OSError):
    """An image file that exists but cannot be decoded (raised with ``strict=True``)."""


class UnreadableImageWarning(SkippedItemsWarning):
    """Images that exist but cannot be decoded were skipped."""


class CaptionTokenizer(Protocol):
    """What the collate needs from a tokenizer (``mmembed.text.tokenizers`` provides it)."""

    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class CaptionedImage:
    """One image and all its reference captions, in file order."""

    image_id: int
    path: Path
    references: tuple[str, ...]


class CaptionSample(NamedTuple):
    image: torch.Tensor
    caption: str  # the caption to learn (training) or the first reference (evaluation)
    references: tuple[str, ...]
    image_id: int
    path: str = ""  # the image file, named in reports


# --- parsing -----------------------------------------------------------------------------------


def load_coco_captions(
    annotation_file: str | PathLike,
    images_dir: str | PathLike,
    *,
    strict: bool = False,
    verify_images: bool = True,
    skipped: list[SkippedItem] | None = None,
) -> list[CaptionedImage]:
    """The captioned images of a COCO captions file, in ``images`` order.

    Images without any caption are dropped (they cannot be trained on or scored). With
    ``verify_images`` every image header is checked with Pillow (cheap: no full decode), and
    unreadable ones are skipped with an :class:`UnreadableImageWarning` (and appended to
    ``skipped``), or raise :class:`UnreadableImageError` if ``strict``.
    """
    annotation_file = Path(annotation_file)
    images_dir = Path(images_dir)
    data = _read_json(annotation_file)
    file_names = _parse_images(data["images"], annotation_file)
    captions = _parse_annotations(data["annotations"], set(file_names), annotation_file)
    captions = _drop_unrepresentable(captions, annotation_file, strict, skipped)
    uncaptioned = len(file_names) - len(captions)
    if uncaptioned:
        log.info(
            "%s: %d image(s) have no caption and are left out", annotation_file, uncaptioned
        )
    records = [
        CaptionedImage(image_id, images_dir / file_name, tuple(captions[image_id]))
        for image_id, file_name in file_names.items()
        if image_id in captions
    ]
    _check_files_exist(records, annotation_file)
    if verify_images:
        records = _drop_unreadable(records, annotation_file, strict, skipped)
    return records


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"COCO captions file not found: {path}")
    try:
        data = json.loads(read_text(path, CocoFormatError))
    except json.JSONDecodeError as err:
        raise CocoFormatError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from err
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            problem = "missing" if key not in data else f"a {type(data[key]).__name__}"
            raise CocoFormatError(f"{path}: '{key}' must be a list, but it is {problem}")
    return data


def _parse_images(images: list[Any], path: Path) -> dict[int, str]:
    """image id -> file name, in file order."""
    file_names: dict[int, str] = {}
    for index, image in enumerate(images):
        where = f"{path}: images[{index}]"
        image_id = _required(image, "id", int, where)
        file_name = _required(image, "file_name", str, where)
        if not file_name.strip():
            raise CocoFormatError(f"{where} (id {image_id}) has an empty file_name")
        if image_id in file_names:
            raise CocoFormatError(f"{where} repeats image id {image_id}")
        file_names[image_id] = file_name
    return file_names


def _parse_annotations(
    annotations: list[Any], known_ids: set[int], path: Path
) -> dict[int, list[tuple[int, str]]]:
    """image id -> its (annotation index, caption) pairs, in file order."""
    captions: dict[int, list[tuple[int, str]]] = {}
    for index, annotation in enumerate(annotations):
        where = f"{path}: annotations[{index}]"
        image_id = _required(annotation, "image_id", int, where)
        caption = _required(annotation, "caption", str, where).strip()
        if image_id not in known_ids:
            raise CocoFormatError(f"{where} refers to unknown image id {image_id}")
        if not caption:
            raise CocoFormatError(f"{where} (image id {image_id}) has an empty caption")
        captions.setdefault(image_id, []).append((index, caption))
    return captions


def _drop_unrepresentable(
    captions: dict[int, list[tuple[int, str]]],
    path: Path,
    strict: bool,
    skipped: list[SkippedItem] | None,
) -> dict[int, list[str]]:
    """image id -> its captions, without those that normalise to nothing (all emoji, another
    script): a model would learn to emit an empty caption from them, and an empty reference
    scores nothing. Each is a counted skip naming its annotation; ``strict`` raises."""
    kept: dict[int, list[str]] = {}
    problems = []
    for image_id, entries in captions.items():
        for index, caption in entries:
            if normalize_text(caption):
                kept.setdefault(image_id, []).append(caption)
                continue
            where = f"{path}: annotations[{index}] (image id {image_id})"
            reason = (
                "unrepresentable caption (nothing is left after normalisation to a-z, digits "
                f"and apostrophes: {caption!r})"
            )
            if strict:
                raise CocoFormatError(f"{where}: {reason}")
            problems.append(SkippedItem(where, "unrepresentable caption", reason))
    total = sum(len(entries) for entries in captions.values())
    warn_skipped(path, problems, total, "captions", SkippedItemsWarning, stacklevel=4)
    if skipped is not None:
        skipped.extend(problems)
    return kept


def _required(entry: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(entry, dict):
        raise CocoFormatError(f"{where} must be a JSON object, got {type(entry).__name__}")
    if key not in entry:
        raise CocoFormatError(f"{where} has no '{key}'")
    value = entry[key]
    # bool is an int subclass, but `"id": true` is a mistake, not image 1.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CocoFormatError(
            f"{where}: '{key}' must be {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _check_files_exist(records: list[CaptionedImage], path: Path) -> None:
    missing = [record for record in records if not record.path.is_file()]
    if missing:
        first = missing[0]
        raise FileNotFoundError(
            f"{path}: {len(missing)} image file(s) do not exist, first image id "
            f"{first.image_id}: {first.path}"
        )


def _drop_unreadable(
    records: list[CaptionedImage],
    path: Path,
    strict: bool,
    skipped: list[SkippedItem] | None = None,
) -> list[CaptionedImage]:
    readable, problems = [], []
    for record in records:
        try:
            with Image.open(record.path) as image:
                image.verify()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            if strict:
                raise UnreadableImageError(
                    f"{path}: image id {record.image_id}: cannot read {record.path} ({err})"
                ) from err
            where = f"{record.path} (image id {record.image_id})"
            problems.append(SkippedItem(where, "unreadable image", f"cannot read it ({err})"))
        else:
            readable.append(record)
    warn_skipped(path, problems, len(records), "images", UnreadableImageWarning, stacklevel=4)
    if skipped is not None:
        skipped.extend(problems)
    return readable


# --- dataset and collate -----------------------------------------------------------------------


class CocoCaptionDataset(Dataset):
    """Images with their captions.

    ``mode="train"``: one item per (image, caption) pair, so an image with five captions is seen
    five times an epoch. ``mode="eval"``: one item per image, with all its references (the
    caption field holds the first one, for a validation loss).

    An image that fails to decode here (its header was fine when it was indexed) gives a
    :class:`~mmembed.data.skips.SkippedItem` instead of a sample, which the collate leaves out;
    ``strict=True`` raises :class:`UnreadableImageError` instead.
    """

    def __init__(
        self,
        images: Sequence[CaptionedImage],
        *,
        mode: Literal["train", "eval"] = "train",
        transform: Callable[[Any], torch.Tensor] | None = None,
        strict: bool = False,
    ):
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.images = list(images)
        self.mode = mode
        if transform is None:
            transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
        self.transform = transform
        self.strict = strict
        if mode == "train":
            self.items = [
                (index, caption)
                for index, record in enumerate(self.images)
                for caption in range(len(record.references))
            ]
        else:
            self.items = [(index, 0) for index in range(len(self.images))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> CaptionSample | SkippedItem:
        image_index, caption_index = self.items[index]
        record = self.images[image_index]
        try:
            image = _load_rgb(record)
        except UnreadableImageError as err:
            if self.strict:
                raise
            where = f"{record.path} (image id {record.image_id})"
            return SkippedItem(where, "unreadable image", f"cannot decode it ({err.__cause__})")
        return CaptionSample(
            image=self.transform(image),
            caption=record.references[caption_index],
            references=record.references,
            image_id=record.image_id,
            path=str(record.path),
        )

    def references(self) -> dict[int, list[str]]:
        """image id -> its reference captions."""
        return {record.image_id: list(record.references) for record in self.images}


def _load_rgb(record: CaptionedImage) -> Image.Image:
    try:
        with Image.open(record.path) as image:
            return _to_rgb(image)
    except OSError as err:
        # Header checks pass some broken files (a truncated JPEG); say which one broke.
        raise UnreadableImageError(
            f"image id {record.image_id}: cannot decode {record.path} ({err})"
        ) from err


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; samples deeper than 8 bits are scaled by their bit depth, not clipped."""
    bits = _DEEP_MODES.get(image.mode)
    if bits is None:
        return image.convert("RGB")
    if image.mode == "I" and image.format == "PNG":
        bits = 16  # Pillow may open 16-bit greyscale PNGs as 32-bit "I"
    samples = np.asarray(image).astype(np.float64)
    grey = np.clip(np.round(samples * (255 / (2**bits - 1))), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def collate_captions(
    samples: Sequence[CaptionSample],
    tokenizer: CaptionTokenizer | None = None,
    *,
    max_length: int | None = None,
) -> dict[str, Any]:
    """Stack images and tokenise captions for teacher forcing.

    Returns ``images`` (B, 3, H, W), ``image_ids`` (B,), ``captions`` and ``references`` (lists)
    and, with a tokenizer, ``input_ids`` = [bos] + tokens and ``target_ids`` = tokens + [eos]
    (B, T, padded with ``pad_id``) and ``lengths`` (B,) = len(tokens) + 1. ``max_length`` caps T
    (tokens beyond it are cut; the eos then falls off too). Also ``paths`` (the image files)
    and ``skipped``: the items that failed to load, which are left out of the batch.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    samples, skipped = without_failed(samples)
    if not samples:
        return empty_batch(skipped)
    sizes = {tuple(sample.image.shape) for sample in samples}
    if len(sizes) > 1:
        raise ValueError(f"images in a batch differ in shape {sorted(sizes)}; resize them")
    batch: dict[str, Any] = {
        "images": torch.stack([sample.image for sample in samples]),
        "image_ids": torch.tensor([sample.image_id for sample in samples], dtype=torch.long),
        "captions": [sample.caption for sample in samples],
        "references": [list(sample.references) for sample in samples],
        PATHS: [sample.path for sample in samples],
        SKIPPED: skipped,
    }
    if tokenizer is not None:
        batch.update(_teacher_forcing_ids(batch["captions"], tokenizer, max_length))
    return batch


def _teacher_forcing_ids(
    captions: list[str], tokenizer: CaptionTokenizer, max_length: int | None
) -> dict[str, torch.Tensor]:
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    encoded = [list(tokenizer.encode(caption)) for caption in captions]
    inputs = [[tokenizer.bos_id, *tokens] for tokens in encoded]
    targets = [[*tokens, tokenizer.eos_id] for tokens in encoded]
    if max_length is not None:
        inputs = [ids[:max_length] for ids in inputs]
        targets = [ids[:max_length] for ids in targets]
    width = max(len(ids) for ids in inputs)
    input_ids = torch.full((len(captions), width), tokenizer.pad_id, dtype=torch.long)
    target_ids = torch.full_like(input_ids, tokenizer.pad_id)
    for row, (source, target) in enumerate(zip(inputs, targets, strict=True)):
        input_ids[row, : len(source)] = torch.tensor(source, dtype=torch.long)
        target_ids[row, : len(target)] = torch.tensor(target, dtype=torch.long)
    lengths = torch.tensor([len(ids) for ids in inputs], dtype=torch.long)
    return {"input_ids": input_ids, "target_ids": target_ids, "lengths": lengths}


# Group keys of a training item (an image and the index of one of its captions).
GROUP_KEYS: dict[str, Callable[[CaptionedImage, int], Any]] = {
    "caption": lambda record, caption: normalize_text(record.references[caption]),
    "image": lambda record, caption: average_hash(record.path),
}


# --- DataModule --------------------------------------------------------------------------------


class CocoCaptionDataModule(TaskDataModule):
    """Train/validation/test COCO captions files sharing one images folder.

    Args:
        data_dir: folder holding the three JSON files.
        train_file, val_file, test_file: JSON file names inside ``data_dir`` (or absolute).
        extra_test_files: more test sets, name -> JSON file (e.g. ``{"test_unseen":
            "test_unseen.json"}``); ``test_dataloader`` then returns one loader per set, the
            main test set first, in the order :attr:`test_split_names` names them.
        images_dir: image folder, relative to ``data_dir`` (or absolute).
        batch_size, eval_batch_size, num_workers, pin_memory, strict, seed: see
            :class:`~mmembed.data.datamodule.TaskDataModule`.
        image_size: side of the square images fed to the model.
        augment: random crop and colour jitter for training images (see
            :func:`~mmembed.data.image_transforms.train_transform`).
        grayscale_p, erasing_p: with ``augment``, random greyscale (off by default: captions
            name colours) and random-erasing probabilities of training images.
        mean, std: the normalisation of the default transforms (ImageNet's, as torchvision's
            pretrained backbones expect); :attr:`image_normalization` reports them.
        train_transform, eval_transform: replace the default transforms (any callable taking a
            PIL image and returning a (3, image_size, image_size) tensor normalised by ``mean``
            and ``std``).
        max_caption_length: cap on teacher-forcing sequence length (tokens + 1).
        verify_images: check every image header with Pillow when a split is loaded (about
            0.1 ms an image), so undecodable files are skipped up front, not mid-epoch.
        max_per_group, group_by: cap each group of training items at ``max_per_group`` per
            epoch (:class:`~mmembed.data.group_sampler.GroupCappedSampler`; None = no cap),
            a group being the items with the same caption (``"caption"``) or whose images share
            a perceptual hash (``"image"``: near-identical pictures).
    """

    def __init__(
        self,
        data_dir: str | PathLike = "data/generated/captions",
        train_file: str = "train.json",
        val_file: str = "validation.json",
        test_file: str = "test.json",
        extra_test_files: Mapping[str, str] | None = None,
        images_dir: str = "images",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        image_size: int = 64,
        augment: bool = True,
        grayscale_p: float = 0.0,
        erasing_p: float = 0.0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        train_transform: Callable[[Any], torch.Tensor] | None = None,
        eval_transform: Callable[[Any], torch.Tensor] | None = None,
        max_caption_length: int | None = None,
        strict: bool = False,
        verify_images: bool = True,
        pin_memory: bool = False,
        seed: int = 0,
        max_per_group: int | None = None,
        group_by: str = "caption",
    ):
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory, strict, seed)
        self.data_dir = Path(data_dir)
        self.files = {
            split: self.data_dir / name
            for split, name in zip(SPLITS, (train_file, val_file, test_file), strict=True)
        }
        self.files.update(self.add_extra_tests("extra_test_files", extra_test_files, self.data_dir))
        self.images_dir = self.data_dir / images_dir
        self.image_size = image_size
        normalization = dict(mean=tuple(mean), std=tuple(std))
        if eval_transform is None:
            eval_transform = default_eval_transform(image_size, **normalization)
        if train_transform is None:
            train_transform = (
                default_train_transform(
                    image_size, grayscale_p=grayscale_p, erasing_p=erasing_p, **normalization
                )
                if augment
                else eval_transform
            )
        self.eval_transform = eval_transform
        self.train_transform = train_transform
        self.image_normalization = normalization
        self.max_caption_length = max_caption_length
        self.verify_images = verify_images
        if group_by not in GROUP_KEYS:
            raise ValueError(f"group_by must be one of {sorted(GROUP_KEYS)}, got {group_by!r}")
        if max_per_group is not None and max_per_group < 1:
            raise ValueError(f"max_per_group must be at least 1 or None, got {max_per_group}")
        self.max_per_group = max_per_group
        self.group_by = group_by
        self._records: dict[str, list[CaptionedImage]] = {}

    def records(self, split: str) -> list[CaptionedImage]:
        """The parsed captioned images of ``split`` ("train", "validation", "test" or a name in
        ``extra_test_files``)."""
        if split not in self._records:
            self._records[split] = load_coco_captions(
                self.files[split],
                self.images_dir,
                strict=self.strict,
                verify_images=self.verify_images,
                skipped=self.skipped.setdefault(split, []),
            )
        return self._records[split]

    def training_texts(self) -> list[str]:
        """Every training caption, to train the tokenizer on (nothing from validation/test)."""
        return [caption for record in self.records("train") for caption in record.references]

    def text_items(self, split: str) -> list[tuple[str, str]]:
        return [
            (f"{self.files[split]}: image id {record.image_id}", caption)
            for record in self.records(split)
            for caption in record.references
        ]

    def set_tokenizer(self, tokenizer: CaptionTokenizer) -> None:
        missing = [
            name
            for name in ("encode", "pad_id", "bos_id", "eos_id")
            if not hasattr(tokenizer, name)
        ]
        if missing:
            raise TypeError(f"tokenizer {type(tokenizer).__name__} lacks {', '.join(missing)}")
        super().set_tokenizer(tokenizer)

    def build_dataset(self, split: str) -> CocoCaptionDataset:
        train = split == "train"
        return CocoCaptionDataset(
            self.records(split),
            mode="train" if train else "eval",
            transform=self.train_transform if train else self.eval_transform,
            strict=self.strict,
        )

    def train_sampler(self, dataset: CocoCaptionDataset):
        if self.max_per_group is None:
            return super().train_sampler(dataset)
        key = GROUP_KEYS[self.group_by]
        groups = [key(dataset.images[image], caption) for image, caption in dataset.items]
        sampler = GroupCappedSampler(groups, self.max_per_group, self.seed)
        log.info(
            "train: %d groups by %s, at most %d items each an epoch (%d of %d items)",
            sampler.num_groups, self.group_by, self.max_per_group, len(sampler), len(dataset),
        )  # fmt: skip
        return sampler

    def collate_fn(self, split: str) -> Callable:
        if self.tokenizer is None:
            raise RuntimeError("call set_tokenizer(tokenizer) before asking for dataloaders")
        return functools.partial(
            collate_captions, tokenizer=self.tokenizer, max_length=self.max_caption_length
        )
