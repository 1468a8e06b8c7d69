"""English speech-recognition corpus synthesised offline with flite from WordNet sentences."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional

from mmembed.data.splits import SPLITS
from mmembed.datagen import corpus_folder
from mmembed.datagen.text_corpus import sentence_pool

# Bump whenever a change alters the corpus for the same spec, so `ensure_speech_corpus`
# rebuilds corpora made by older code.
GENERATOR_VERSION = 1
# kal is the 8 kHz diphone voice of the kal16 speaker: after resampling it adds band-limited,
# telephone-like audio.
DEFAULT_VOICES = ("slt", "rms", "awb", "kal16", "kal")
DURATION_STRETCH_RANGE = (0.85, 1.2)
PITCH_FACTOR_RANGE = (0.88, 1.15)
# Mean F0 (Hz) of each built-in voice, measured on its output; pitch is varied around it.
# rms is a unit-selection voice that ignores the F0 target, so it keeps its own pitch.
NATURAL_F0_HZ = {"slt": 170, "awb": 130, "kal16": 95, "kal": 95}


@dataclass(frozen=True)
class Utterance:
    split: str
    index: int
    text: str
    voice: str
    duration_stretch: float
    f0_mean: int | None

    @property
    def audio_path(self) -> str:
        """Path of the wav file relative to the corpus folder (and to the manifests)."""
        return f"audio/{self.split}/{self.split}-{self.index:06d}.wav"


def build_speech_corpus(
    out_dir: str | Path,
    *,
    num_train: int = 4000,
    num_validation: int = 200,
    num_test: int = 200,
    voices: Sequence[str] = DEFAULT_VOICES,
    seed: int = 0,
    jobs: int = 2,
    sample_rate: int = 16000,
) -> Path:
    """Synthesise the corpus into `out_dir`, replacing a corpus already there.

    The same arguments (other than `jobs`) always give byte-identical manifests and audio.
    """
    out_dir = Path(out_dir)
    spec = _corpus_spec(num_train, num_validation, num_test, voices, seed, sample_rate)
    check_flite(spec["voices"])
    utterances = plan_utterances(
        sentence_pool(),
        {"train": num_train, "validation": num_validation, "test": num_test},
        voices=spec["voices"],
        seed=seed,
    )
    with corpus_folder.staging(out_dir, __name__) as staging:
        durations = synthesise_all(utterances, staging, sample_rate, jobs)
        _write_manifests(staging, utterances, durations)
        _write_corpus_info(staging, spec, utterances, durations)
    return out_dir


def ensure_speech_corpus(
    out_dir: str | Path,
    *,
    num_train: int = 4000,
    num_validation: int = 200,
    num_test: int = 200,
    voices: Sequence[str] = DEFAULT_VOICES,
    seed: int = 0,
    jobs: int = 2,
    sample_rate: int = 16000,
) -> Path:
    """`out_dir`, built unless it already holds a corpus of the same spec and generator."""
    spec = _corpus_spec(num_train, num_validation, num_test, voices, seed, sample_rate)
    if corpus_folder.is_current(out_dir, __name__, spec):
        return Path(out_dir)
    return build_speech_corpus(
        out_dir,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        voices=voices,
        seed=seed,
        jobs=jobs,
        sample_rate=sample_rate,
    )


def read_corpus_info(out_dir: str | Path) -> dict | None:
    """The corpus.json of a complete speech corpus in `out_dir`, or None if there is none."""
    return corpus_folder.read_corpus_info(out_dir, __name__)


def plan_utterances(
    sentences: Sequence[str], counts: dict[str, int], *, voices: Sequence[str], seed: int
) -> list[Utterance]:
    """What to synthesise: sentences split by text (test first, then validation, then train
    from the rest), each with a voice, a speed and a pitch drawn from `seed`."""
    needed = counts["test"] + counts["validation"]
    if needed >= len(sentences):
        raise ValueError(
            f"{needed} test+validation sentences leave none for training out of {len(sentences)}"
        )
    order = np.random.default_rng(seed).permutation(len(sentences))
    shuffled = [sentences[i] for i in order]
    # Test comes first so that its sentences stay the same when the other sizes change.
    split_sentences = {
        "test": shuffled[: counts["test"]],
        "validation": shuffled[counts["test"] : needed],
        "train": shuffled[needed:],
    }
    return [
        _plan_utterance(split, index, split_sentences[split], voices, seed)
        for split in SPLITS
        for index in range(counts[split])
    ]


def _plan_utterance(
    split: str, index: int, sentences: Sequence[str], voices: Sequence[str], seed: int
) -> Utterance:
    # A train set larger than its sentence pool reuses sentences; shifting the voice on each
    # pass makes a repeated sentence come back in another voice.
    repeat, position = divmod(index, len(sentences))
    voice = voices[(position + repeat) % len(voices)]
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    return Utterance(split, index, sentences[position], voice, *draw_reading(voice, rng))


def draw_reading(voice: str, rng: np.random.Generator) -> tuple[float, int | None]:
    """A random speed (flite ``duration_stretch``) and mean pitch (Hz; None for a voice that
    ignores the target) for one utterance of ``voice``."""
    # Rounded so the value passed to flite and recorded in the manifest is exactly the same.
    stretch = round(float(rng.uniform(*DURATION_STRETCH_RANGE)), 2)
    pitch_factor = float(rng.uniform(*PITCH_FACTOR_RANGE))
    natural_f0 = NATURAL_F0_HZ.get(voice)
    return stretch, round(natural_f0 * pitch_factor) if natural_f0 else None


def _corpus_spec(
    num_train: int,
    num_validation: int,
    num_test: int,
    voices: Sequence[str],
    seed: int,
    sample_rate: int,
) -> dict:
    if isinstance(voices, str):
        raise TypeError(f"voices must be a sequence of voice names, not the string {voices!r}")
    if not voices:
        raise ValueError("voices must name at least one flite voice")
    return {
        "num_train": num_train,
        "num_validation": num_validation,
        "num_test": num_test,
        "voices": list(voices),
        "seed": seed,
        "sample_rate": sample_rate,
        "version": GENERATOR_VERSION,
    }


def check_flite(voices: Sequence[str]) -> None:
    """Fail naming the problem unless flite is installed with every one of ``voices``."""
    if shutil.which("flite") is None:
        raise FileNotFoundError("flite is not installed: install it with `apt-get install flite`")
    listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
    available = set(listing.split(":", 1)[-1].split())
    missing = [voice for voice in voices if voice not in available]
    if missing:
        raise ValueError(f"flite has no voice {missing}; available: {sorted(available)}")


def synthesise_all(
    utterances: Sequence[Utterance], root: Path, sample_rate: int, jobs: int
) -> list[float]:
    """Write every utterance under ``root`` (``jobs`` flite processes); their durations (s)."""
    for split in sorted({utterance.split for utterance in utterances}):
        (root / "audio" / split).mkdir(parents=True)
    # Threads suffice: the work is in flite subprocesses, which run in parallel outside the GIL.
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda u: _synthesise(u, root, sample_rate), utterances))


def _synthesise(utterance: Utterance, root: Path, sample_rate: int) -> float:
    """Write one utterance as 16-bit mono wav at `sample_rate`; return its duration (s)."""
    path = root / utterance.audio_path
    _run_flite(utterance, path)
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        audio = torchaudio.functional.resample(torch.from_numpy(audio), rate, sample_rate).numpy()
    # Resampling can overshoot full scale; clip rather than let the int16 conversion wrap.
    sf.write(path, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")
    return len(audio) / sample_rate


def _run_flite(utterance: Utterance, path: Path) -> None:
    command = ["flite", "-voice", utterance.voice]
    command += ["--setf", f"duration_stretch={utterance.duration_stretch}"]
    if utterance.f0_mean is not None:
        command += ["--setf", f"int_f0_target_mean={utterance.f0_mean}"]
    command += ["-t", utterance.text, "-o", str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not path.is_file():
        raise RuntimeError(f"flite failed on {utterance}: {result.stderr.strip()}")


def _write_manifests(
    root: Path, utterances: Sequence[Utterance], durations: Sequence[float]
) -> None:
    lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    for utterance, duration in zip(utterances, durations, strict=True):
        lines[utterance.split].append(json.dumps(manifest_entry(utterance, duration)) + "\n")
    for split in SPLITS:
        (root / f"{split}.jsonl").write_text("".join(lines[split]))


def manifest_entry(utterance: Utterance, duration: float) -> dict:
    """The NeMo manifest line of a synthesised utterance, with how it was read."""
    return {
        "audio_filepath": utterance.audio_path,
        "text": utterance.text,
        "duration": duration,
        "voice": utterance.voice,
        "duration_stretch": utterance.duration_stretch,
        "f0_mean": utterance.f0_mean,
    }


def _write_corpus_info(
    root: Path, spec: dict, utterances: Sequence[Utterance], durations: Sequence[float]
) -> None:
    counts = Counter(utterance.split for utterance in utterances)
    seconds: dict[str, float] = defaultdict(float)
    for utterance, duration in zip(utterances, durations, strict=True):
        seconds[utterance.split] += duration
    corpus_folder.write_info(
        root,
        __name__,
        spec,
        {
            split: {"utterances": counts[split], "hours": round(seconds[split] / 3600, 4)}
            for split in SPLITS
        },
        sentence_pool=len(sentence_pool()),
        unique_train_sentences=len({u.text for u in utterances if u.split == "train"}),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `mmembed-data speech` (the CLI adds --out)."""
    parser.add_argument("--num-train", type=int, default=4000, help="training utterances")
    parser.add_argument("--num-validation", type=int, default=200, help="validation utterances")
    parser.add_argument("--num-test", type=int, default=200, help="test utterances")
    add_reading_arguments(parser, seed_help="picks sentences, voices, speeds")


def add_reading_arguments(parser: argparse.ArgumentParser, seed_help: str) -> None:
    """The options of every flite corpus: voices, seed, jobs, sample rate, --force."""
    parser.add_argument(
        "--voices", nargs="+", default=list(DEFAULT_VOICES), help="flite voices (see flite -lv)"
    )
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument("--jobs", type=int, default=2, help="parallel flite processes")
    parser.add_argument("--sample-rate", type=int, default=16000, help="output rate (Hz)")
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if the same corpus is already there"
    )


def run(args: argparse.Namespace) -> Path:
    """Build (or, unless --force, reuse) the corpus described by parsed CLI arguments."""
    make = build_speech_corpus if args.force else ensure_speech_corpus
    return make(
        args.out,
        num_train=args.num_train,
        num_validation=args.num_validation,
        num_test=args.num_test,
        voices=args.voices,
        seed=args.seed,
        jobs=args.jobs,
        sample_rate=args.sample_rate,
    )
