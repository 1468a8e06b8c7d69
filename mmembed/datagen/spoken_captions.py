"""Spoken captions: the caption corpus's captions and the video class names read by flite voices.

They pair audio with images and videos, which cross-modal retrieval needs (a spoken query that
finds a picture), on top of the (audio, text), (image, text) and (video, label) pairs of the
other corpora. Synthesised offline like the speech corpus (same voices, speeds and pitches),
from the caption and video corpora already built, and rebuilt when either changes.

Layout (NeMo manifests, audio paths relative to the corpus folder):

- ``{train,validation,test}.jsonl``: readings of the captions of that split of the caption
  corpus, with ``image_id`` and ``image_file`` (relative to the caption corpus's ``images/``).
  Validation and test read the first reference (the most specific name) of every image.
  Training reads ``train_readings`` different captions of every distinct set of captions:
  images that share all their captions (the renderings of one emoji) share their readings,
  which go with the first of those images. ``train.jsonl`` also holds the training readings of
  the class names.
- ``labels_{validation,test}.jsonl``: ``label_readings`` readings of every video class name,
  with ``label``, scored against the videos of that split.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from mmembed.data.coco import CaptionedImage, load_coco_captions
from mmembed.data.splits import SPLITS
from mmembed.data.video_annotations import read_class_list
from mmembed.datagen import corpus_folder
from mmembed.datagen.speech import (
    DEFAULT_VOICES,
    Utterance,
    add_reading_arguments,
    check_voices,
    draw_reading,
    manifest_entry,
    synthesise_all,
)

GENERATOR_VERSION = 1
DEFAULT_OUT_DIR = Path("data/generated/spoken_captions")
LABEL_SPLITS = ("validation", "test")
_KINDS = ("caption", "label")


def _spec(
    captions_dir: str | PathLike,
    video_dir: str | PathLike,
    *,
    voices: Sequence[str] = DEFAULT_VOICES,
    seed: int = 0,
    sample_rate: int = 16000,
    train_readings: int = 1,
    label_readings: int = 3,
) -> dict[str, Any]:
    """The corpus spec; the keywords are the options of the build (see the module docstring)."""
    if isinstance(voices, str) or not voices:
        raise ValueError(f"voices must be a non-empty list of voices, got {voices!r}")
    if train_readings < 1 or label_readings < 1:
        raise ValueError("train_readings and label_readings must be at least 1")
    captions = corpus_folder.read_corpus_info(captions_dir, "mmembed.datagen.captions")
    video = corpus_folder.read_corpus_info(video_dir, "mmembed.datagen.video")
    # The source corpora's own specs: a rebuilt caption or video corpus means new readings.
    return {
        "captions": captions["spec"] if captions else str(captions_dir),
        "video": video["spec"] if video else str(video_dir),
        "voices": list(voices),
        "seed": seed,
        "sample_rate": sample_rate,
        "train_readings": train_readings,
        "label_readings": label_readings,
        "version": GENERATOR_VERSION,
    }


def plan_readings(
    captions_dir: str | PathLike,
    class_names: Sequence[str],
    *,
    voices: Sequence[str],
    seed: int,
    train_readings: int,
    label_readings: int,
) -> dict[str, list[tuple[Utterance, dict[str, Any]]]]:
    """manifest name -> (utterance, its pairing fields), for every reading to synthesise."""
    captions_dir = Path(captions_dir)
    readings: dict[str, list[tuple[Utterance, dict[str, Any]]]] = defaultdict(list)
    for split_index, split in enumerate(SPLITS):
        images = load_coco_captions(
            captions_dir / f"{split}.json", captions_dir / "images", verify_images=False
        )
        if split == "train":  # the first image of every distinct set of captions
            first: dict[tuple[str, ...], CaptionedImage] = {}
            for image in images:
                first.setdefault(image.references, image)
            images = list(first.values())
        for image_number, image in enumerate(images):
            rng = np.random.default_rng([seed, split_index, 0, image_number])
            if split == "train":
                count = min(train_readings, len(image.references))
                picks = sorted(rng.choice(len(image.references), count, replace=False).tolist())
            else:
                picks = [0]
            for pick in picks:
                index = len(readings[split])
                voice = voices[index % len(voices)]
                utterance = Utterance(
                    split, index, image.references[pick], voice, *draw_reading(voice, rng)
                )
                image_file = str(image.path.relative_to(captions_dir / "images"))
                pairing = {"image_id": image.image_id, "image_file": image_file}
                readings[split].append((utterance, pairing))
        manifest = split if split == "train" else f"labels_{split}"
        for reading in range(label_readings):
            for class_index, name in enumerate(class_names):
                number = reading * len(class_names) + class_index
                rng = np.random.default_rng([seed, split_index, 1, number])
                # another voice for each reading of a class, and classes spread over voices
                voice = voices[(class_index + reading) % len(voices)]
                utterance = Utterance(
                    f"labels_{split}", number, name, voice, *draw_reading(voice, rng)
                )
                readings[manifest].append((utterance, {"label": name}))
    return dict(readings)


def build_spoken_caption_corpus(
    out_dir: str | PathLike,
    *,
    captions_dir: str | PathLike,
    video_dir: str | PathLike,
    jobs: int = 2,
    **options: Any,
) -> Path:
    """Synthesise the corpus into ``out_dir`` (replacing one there) from the caption corpus in
    ``captions_dir`` and the class names of the video corpus in ``video_dir`` (``jobs`` synthesiser
    processes). ``options``: ``voices``, ``seed``, ``sample_rate``, ``train_readings``,
    ``label_readings`` (defaults in :func:`_spec`). The same options and source corpora always
    give the same manifests and audio."""
    out_dir, captions_dir, video_dir = Path(out_dir), Path(captions_dir), Path(video_dir)
    spec = _spec(captions_dir, video_dir, **options)
    check_voices(spec["voices"])
    readings = plan_readings(
        captions_dir,
        read_class_list(video_dir / "classes.txt"),
        voices=spec["voices"],
        seed=spec["seed"],
        train_readings=spec["train_readings"],
        label_readings=spec["label_readings"],
    )
    with corpus_folder.staging(out_dir, __name__) as staging:
        planned = [pair for manifest in readings.values() for pair in manifest]
        utterances = [utterance for utterance, _ in planned]
        sets = list(dict.fromkeys(utterance.split for utterance in utterances))
        durations = synthesise_all(utterances, sets, staging, spec["sample_rate"], jobs)
        duration_of = {u.audio_path: d for (u, _), d in zip(planned, durations, strict=True)}
        counts = {}
        for manifest, pairs in readings.items():
            lines = [
                json.dumps({**manifest_entry(u, duration_of[u.audio_path]), **pairing})
                for u, pairing in pairs
            ]
            (staging / f"{manifest}.jsonl").write_text("\n".join(lines) + "\n")
            kinds = [_KINDS[int("label" in pairing)] for _, pairing in pairs]
            seconds = sum(duration_of[u.audio_path] for u, _ in pairs)
            counts[manifest] = {
                **{f"{kind}s": kinds.count(kind) for kind in _KINDS if kind in kinds},
                "hours": round(seconds / 3600, 4),
            }
        corpus_folder.write_info(staging, __name__, spec, counts)
    return out_dir


def ensure_spoken_caption_corpus(
    out_dir: str | PathLike,
    *,
    captions_dir: str | PathLike,
    video_dir: str | PathLike,
    jobs: int = 2,
    **options: Any,
) -> Path:
    """``out_dir``, built unless it holds a corpus of the same options and source corpora."""
    if corpus_folder.is_current(out_dir, __name__, _spec(captions_dir, video_dir, **options)):
        return Path(out_dir)
    return build_spoken_caption_corpus(
        out_dir, captions_dir=captions_dir, video_dir=video_dir, jobs=jobs, **options
    )


def ensure_multimodal_corpora(
    out_dir: str | PathLike, *, speech: Any, captions: Any, video: Any, **spoken: Any
) -> Path:
    """The ``corpus`` step of the multimodal experiments: ``speech``, ``captions`` and
    ``video`` are the folders of those corpora, built first by the nested corpus configs
    (Hydra instantiates them before this call); then the spoken captions of the last two."""
    del speech  # built by its own config; only its folder arrives here
    return ensure_spoken_caption_corpus(out_dir, captions_dir=captions, video_dir=video, **spoken)


# --- CLI ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `mmembed-data spoken_captions` (the CLI adds --out)."""
    parser.add_argument(
        "--captions", type=Path, default=Path("data/generated/captions"),
        help="the caption corpus (mmembed-data captions) whose captions are read",
    )  # fmt: skip
    parser.add_argument(
        "--video", type=Path, default=Path("data/generated/video"),
        help="the video corpus (mmembed-data video) whose class names are read",
    )  # fmt: skip
    parser.add_argument(
        "--train-readings", type=int, default=1,
        help="readings of different captions per distinct set of training captions",
    )  # fmt: skip
    parser.add_argument(
        "--label-readings", type=int, default=3, help="readings of each class name per split"
    )
    add_reading_arguments(parser, seed_help="picks captions, speeds, pitches")


def run(args: argparse.Namespace) -> Path:
    make = build_spoken_caption_corpus if args.force else ensure_spoken_caption_corpus
    return make(
        args.out,
        captions_dir=args.captions,
        video_dir=args.video,
        voices=args.voices,
        seed=args.seed,
        jobs=args.jobs,
        sample_rate=args.sample_rate,
        train_readings=args.train_readings,
        label_readings=args.label_readings,
    )
