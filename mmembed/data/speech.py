"""Speech-recognition data: manifest entries -> checked utterances -> duration-bucketed batches.

Indexing reads only headers; a file whose header is fine but whose frames do not decode (a
corrupt FLAC), or whose samples are NaN or infinite, is found when it is loaded and left out of
its batch as a counted skip (see :mod:`mmembed.data.skips`), or raises with ``strict``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import soundfile
import torch
import torchaudio

from mmembed.data.audio_augment import AudioAugment
from mmembed.data.audio_io import AudioLoadError, load_audio
from mmembed.data.datamodule import TaskDataModule, check_positive
from mmembed.data.manifest import ManifestEntry, read_manifest
from mmembed.data.sampling import DurationBucketBatchSampler
from mmembed.data.skips import (
    PATHS,
    SKIPPED,
    SkippedItem,
    SkippedItemsWarning,
    empty_batch,
    warn_skipped,
    without_failed,
)
from mmembed.text.tokenizers import Tokenizer, dropped_characters, normalize_text

log = logging.getLogger(__name__)

# A file whose real length differs from the manifest by more than this is treated as truncated.
DURATION_TOLERANCE_S = 0.1


class AudioSkipWarning(SkippedItemsWarning):
    """Utterances were skipped while indexing a manifest (the message counts and names them)."""


@dataclass(frozen=True)
class Utterance:
    """One usable utterance: ``text`` is the normalised transcript (the training target),
    ``transcript`` the manifest's own, ``where`` names its manifest line and file."""

    audio_path: Path
    text: str
    duration: float
    where: str = ""
    transcript: str = ""


def index_utterances(
    entries: Sequence[ManifestEntry],
    manifest: str | PathLike,
    min_duration: float = 0.0,
    max_duration: float = float("inf"),
    max_text_chars: int | None = None,
    strict: bool = False,
    skipped: list[SkippedItem] | None = None,
) -> list[Utterance]:
    """Keep the entries whose audio is readable, non-empty, as long as the manifest says, within
    the duration range, and whose normalised transcript is non-empty and not over-long.

    Unusable entries are skipped with one counted warning naming each file (``strict=True``
    raises on the first instead) and appended to ``skipped``. Only headers are read, so this
    is fast.
    """
    kept, left_out = [], []
    for entry in entries:
        where = f"{manifest}:{entry.line}: {entry.audio_path}"
        reason = _problem(entry, min_duration, max_duration, max_text_chars)
        if reason is None:
            text = normalize_text(entry.text)
            kept.append(Utterance(entry.audio_path, text, entry.duration, where, entry.text))
            continue
        item = SkippedItem(where, reason.split(" (")[0], reason)
        if strict:
            raise ValueError(str(item))
        left_out.append(item)
    warn_skipped(manifest, left_out, len(entries), "utterances", AudioSkipWarning)
    if skipped is not None:
        skipped.extend(left_out)
    return kept


def _problem(
    entry: ManifestEntry, min_duration: float, max_duration: float, max_text_chars: int | None
) -> str | None:
    text = normalize_text(entry.text)
    if not text and dropped_characters(entry.text):
        return (
            "unrepresentable transcript (nothing is left after normalisation to a-z, digits and "
            f"apostrophes: {entry.text!r})"
        )
    if not text:
        return "empty transcript"
    if max_text_chars is not None and len(text) > max_text_chars:
        return f"transcript too long ({len(text)} > {max_text_chars} characters)"
    try:
        info = soundfile.info(str(entry.audio_path))
    except Exception as err:  # soundfile raises several types for missing/corrupt files
        return f"unreadable audio ({type(err).__name__}: {err})"
    if info.frames == 0:
        return "empty audio"
    real_duration = info.frames / info.samplerate
    if abs(real_duration - entry.duration) > DURATION_TOLERANCE_S:
        return (
            f"truncated or mislabelled audio (file has {real_duration:.2f} s, "
            f"manifest says {entry.duration:.2f} s)"
        )
    if not min_duration <= real_duration <= max_duration:
        return (
            f"duration out of range ({real_duration:.2f} s not in [{min_duration}, {max_duration}])"
        )
    return None


class SpeechDataset(torch.utils.data.Dataset):
    """Items ``{"waveform", "tokens", "text", "path"}``; an utterance whose audio fails to load
    gives a :class:`~mmembed.data.skips.SkippedItem` instead (``strict=True`` raises
    :class:`AudioLoadError`)."""

    def __init__(
        self,
        utterances: Sequence[Utterance],
        sample_rate: int = 16000,
        speed_factors: Sequence[float] | None = None,
        strict: bool = False,
        augment: AudioAugment | None = None,
    ):
        self.utterances = list(utterances)
        self.sample_rate = sample_rate
        self.strict = strict
        self.tokenizer: Tokenizer | None = None
        self.speed = (
            torchaudio.transforms.SpeedPerturbation(sample_rate, list(speed_factors))
            if speed_factors
            else None
        )
        self.augment = augment if augment is not None and augment.active else None

    def __len__(self) -> int:
        return len(self.utterances)

    def durations(self) -> list[float]:
        return [u.duration for u in self.utterances]

    def __getitem__(self, index: int) -> dict[str, Any] | SkippedItem:
        if self.tokenizer is None:
            raise RuntimeError("SpeechDataset needs a tokenizer: call set_tokenizer() first")
        utterance = self.utterances[index]
        try:
            waveform = load_audio(utterance.audio_path, self.sample_rate)
        except AudioLoadError as err:
            where = utterance.where or str(utterance.audio_path)
            reason = str(err).removeprefix(f"{utterance.audio_path}: ")
            if self.strict:
                raise AudioLoadError(f"{where}: {reason}", err.kind) from err
            return SkippedItem(where, err.kind, reason)
        if self.speed is not None:
            waveform, _ = self.speed(waveform)
        if self.augment is not None:
            waveform = self.augment(waveform)
        return {
            "waveform": waveform,
            "tokens": torch.tensor(self.tokenizer.encode(utterance.text), dtype=torch.long),
            "text": utterance.text,
            "path": str(utterance.audio_path),
        }


def collate_speech(items: list[dict[str, Any] | SkippedItem]) -> dict[str, Any]:
    """Padded ``waveforms``/``tokens`` with their lengths, ``texts``, ``paths``, and
    ``skipped``: the items that failed to load, left out of the batch."""
    items, skipped = without_failed(items)
    if not items:
        return empty_batch(skipped)
    waveforms = [item["waveform"] for item in items]
    tokens = [item["tokens"] for item in items]
    return {
        "waveforms": torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True),
        "waveform_lengths": torch.tensor([len(w) for w in waveforms]),
        "tokens": torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True, padding_value=0),
        "token_lengths": torch.tensor([len(t) for t in tokens]),
        "texts": [item["text"] for item in items],
        PATHS: [item["path"] for item in items],
        SKIPPED: skipped,
    }


class SpeechDataModule(TaskDataModule):
    """Train/validation/test manifests in one folder, batched by duration.

    Args:
        data_dir: folder holding the manifests (relative ``audio_filepath``s resolve against the
            manifest's own folder).
        train_manifest, val_manifest, test_manifest: manifest file names inside ``data_dir``
            (or absolute paths).
        extra_test_manifests: more test sets, name -> manifest (e.g. ``{"test_slow":
            "test_slow.jsonl"}``); ``test_dataloader`` then returns one loader per set, the main
            test set first, in the order :attr:`test_split_names` names them.
        sample_rate: model rate; files at other rates are resampled.
        max_batch_duration: seconds of padded audio per batch (the GPU/CPU memory knob).
        max_batch_size: optional cap on utterances per batch.
        min_duration, max_duration: utterances outside are skipped (counted warning).
        max_text_chars: transcripts longer than this are skipped (counted warning).
        speed_factors: speed perturbation of training audio (e.g. ``[0.9, 1.0, 1.1]``).
        augment: noise, reverberation, gain and band-limiting of training audio: the arguments
            of :class:`~mmembed.data.audio_augment.AudioAugment` (e.g. ``{noise_p: 0.5}``);
            evaluation audio is never augmented.
        num_workers, strict, seed: see :class:`~mmembed.data.datamodule.TaskDataModule`
            (``seed`` also orders the duration buckets).
    """

    def __init__(
        self,
        data_dir: str,
        train_manifest: str = "train.jsonl",
        val_manifest: str = "validation.jsonl",
        test_manifest: str = "test.jsonl",
        extra_test_manifests: Mapping[str, str] | None = None,
        sample_rate: int = 16000,
        max_batch_duration: float = 160.0,
        max_batch_size: int | None = None,
        min_duration: float = 0.1,
        max_duration: float = 20.0,
        max_text_chars: int | None = 400,
        speed_factors: Sequence[float] | None = None,
        augment: dict[str, Any] | None = None,
        num_workers: int = 0,
        strict: bool = False,
        seed: int = 0,
    ):
        super().__init__(num_workers=num_workers, strict=strict, seed=seed)
        if max_batch_size is not None:
            check_positive("max_batch_size", max_batch_size)
        self.data_dir = Path(data_dir)
        self.manifests = {
            "train": self.data_dir / train_manifest,
            "validation": self.data_dir / val_manifest,
            "test": self.data_dir / test_manifest,
        }
        self.manifests.update(
            self.add_extra_tests("extra_test_manifests", extra_test_manifests, self.data_dir)
        )
        self.sample_rate = sample_rate
        self.max_batch_duration = max_batch_duration
        self.max_batch_size = max_batch_size
        self.filters = dict(
            min_duration=min_duration, max_duration=max_duration, max_text_chars=max_text_chars
        )
        self.speed_factors = list(speed_factors) if speed_factors else None
        self.augment = AudioAugment(sample_rate=sample_rate, **(augment or {}))

    def build_dataset(self, split: str) -> SpeechDataset:
        manifest = self.manifests[split]
        utterances = index_utterances(
            read_manifest(manifest),
            manifest,
            strict=self.strict,
            skipped=self.skipped[split],
            **self.filters,
        )
        if not utterances:
            raise ValueError(f"{manifest}: no usable utterances")
        train = split == "train"
        dataset = SpeechDataset(
            utterances,
            self.sample_rate,
            self.speed_factors if train else None,
            self.strict,
            self.augment if train else None,
        )
        log.info("%s: %d utterances, %.1f h", split, len(dataset), sum(dataset.durations()) / 3600)
        return dataset

    def training_texts(self) -> list[str]:
        """Training transcripts, to train the tokenizer on (nothing from validation/test)."""
        return [u.text for u in self.dataset("train").utterances]

    def text_items(self, split: str) -> list[tuple[str, str]]:
        return [(u.where, u.transcript) for u in self.dataset(split).utterances]

    def batch_sampler(
        self, split: str, dataset: SpeechDataset, shuffle: bool
    ) -> DurationBucketBatchSampler:
        # Batches of similar duration in every split; the sampler shards them across ranks.
        return DurationBucketBatchSampler(
            dataset.durations(),
            self.max_batch_duration,
            max_batch_size=self.max_batch_size,
            shuffle=shuffle,
            seed=self.seed,
        )

    def collate_fn(self, split: str):
        return collate_speech
