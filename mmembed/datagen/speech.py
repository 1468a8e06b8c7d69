"""English speech-recognition corpus synthesised offline (flite, espeak-ng) from WordNet sentences.

Beside ``train/validation/test.jsonl`` a corpus can hold extra test manifests (``extra_tests``):
the test sentences read again under another condition (a speaking rate, a voice or a
synthesiser held out of training, noise, a room), so that a model is also judged on speech it
was not trained on. The default corpus adds two: ``test_slow`` (slower than any training
utterance) and ``test_espeak`` (espeak-ng, a second synthesiser that sounds unlike flite).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import zlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
# espeak-ng voices are named "espeak:<voice>[+<variant>]" (`espeak-ng --voices=en`,
# `espeak-ng --voices=variant`) and can be used wherever flite voices are. Its formant
# synthesis is so unlike a recording that an off-the-shelf recogniser gets 80-100% WER on it:
# it is a second synthesiser to test on, not a voice for the default training set.
ESPEAK_PREFIX = "espeak:"
DEFAULT_ESPEAK_VOICES = (
    "espeak:en-us",
    "espeak:en-gb+m3",
    "espeak:en-gb-scotland+f2",
    "espeak:en-us+f4",
)
# espeak-ng's default speed (words per minute) and pitch (0-99): duration_stretch divides the
# speed, the drawn pitch factor scales the pitch, as they do flite's duration and F0.
ESPEAK_WORDS_PER_MINUTE = 175
ESPEAK_PITCH = 50
DURATION_STRETCH_RANGE = (0.85, 1.2)
PITCH_FACTOR_RANGE = (0.88, 1.15)
# Mean F0 (Hz) of each built-in voice, measured on its output; pitch is varied around it.
# rms is a unit-selection voice that ignores the F0 target, so it keeps its own pitch.
NATURAL_F0_HZ = {"slt": 170, "awb": 130, "kal16": 95, "kal": 95}
# The default extra tests: the test sentences slower than any training utterance (same voices),
# and read by espeak-ng. Without num_utterances an extra test reads every test sentence once.
DEFAULT_EXTRA_TESTS: dict[str, dict[str, Any]] = {
    "test_slow": {"stretch": [1.35, 1.5]},
    "test_espeak": {"voices": list(DEFAULT_ESPEAK_VOICES)},
}
DEFAULT_SPEC: dict[str, Any] = dict(
    num_train=4000,
    num_validation=200,
    num_test=200,
    voices=DEFAULT_VOICES,
    seed=0,
    sample_rate=16000,
    extra_tests=DEFAULT_EXTRA_TESTS,
    noise_snr=None,
    reverb_rt60=None,
    held_out_sentences=None,
)
_EXTRA_TEST_OPTIONS = ("num_utterances", "voices", "stretch", "noise_snr", "reverb_rt60")
_SET_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Condition:
    """How a set of utterances is spoken: its voices (taken in turn), the range of
    ``duration_stretch`` (above 1 is slower), and optionally white noise at an SNR (dB) and
    reverberation with an RT60 (s), each drawn per utterance from its range."""

    voices: tuple[str, ...]
    stretch: tuple[float, float] = DURATION_STRETCH_RANGE
    noise_snr: tuple[float, float] | None = None
    reverb_rt60: tuple[float, float] | None = None


@dataclass(frozen=True)
class ExtraTest:
    """A test manifest beside ``test.jsonl``: ``num_utterances`` readings of the test
    sentences under ``condition``."""

    num_utterances: int
    condition: Condition


@dataclass(frozen=True)
class Utterance:
    split: str
    index: int
    text: str
    voice: str
    duration_stretch: float
    f0_mean: int | None
    # espeak-ng's pitch setting (espeak voices only).
    pitch: int | None = None
    noise_snr: float | None = None
    reverb_rt60: float | None = None
    # Seeds the noise and the room response (only when there are any).
    effects_seed: int | None = None

    @property
    def audio_path(self) -> str:
        """Path of the wav file relative to the corpus folder (and to the manifests)."""
        return f"audio/{self.split}/{self.split}-{self.index:06d}.wav"


def is_espeak_voice(voice: str) -> bool:
    return voice.startswith(ESPEAK_PREFIX)


def build_speech_corpus(
    out_dir: str | Path,
    *,
    num_train: int = DEFAULT_SPEC["num_train"],
    num_validation: int = DEFAULT_SPEC["num_validation"],
    num_test: int = DEFAULT_SPEC["num_test"],
    voices: Sequence[str] = DEFAULT_SPEC["voices"],
    seed: int = DEFAULT_SPEC["seed"],
    sample_rate: int = DEFAULT_SPEC["sample_rate"],
    extra_tests: Mapping[str, Mapping[str, Any]] | None = DEFAULT_SPEC["extra_tests"],
    noise_snr: Sequence[float] | None = DEFAULT_SPEC["noise_snr"],
    reverb_rt60: Sequence[float] | None = DEFAULT_SPEC["reverb_rt60"],
    held_out_sentences: int | None = DEFAULT_SPEC["held_out_sentences"],
    jobs: int = 2,
) -> Path:
    """Synthesise the corpus into `out_dir`, replacing a corpus already there.

    Writes ``audio/<set>/*.wav`` (16-bit mono at `sample_rate`), one manifest per set
    (``train``, ``validation``, ``test`` and each extra test: ``<name>.jsonl``) and
    ``corpus.json``. `voices` are flite voices (``flite -lv``) and/or ``espeak:<voice>``;
    `noise_snr` / `reverb_rt60` (``[low, high]``) add white noise / a synthetic room to every
    utterance (a new acoustic domain); `extra_tests` maps a name to options ``num_utterances``
    (default: one per test sentence), ``voices`` (default: `voices`), ``stretch`` (default: the
    training range, 0.85-1.2), ``noise_snr`` and ``reverb_rt60`` (default: the corpus's). See
    :func:`plan_utterances` for how sentences are split (`held_out_sentences`).

    The same arguments (other than `jobs`) always give byte-identical manifests and audio, and
    an option that adds an extra test never changes the other sets.
    """
    spec = _normalized_spec(
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        voices=voices,
        seed=seed,
        sample_rate=sample_rate,
        extra_tests=extra_tests,
        noise_snr=noise_snr,
        reverb_rt60=reverb_rt60,
        held_out_sentences=held_out_sentences,
    )
    extra_voices = [voice for test in spec["extra_tests"].values() for voice in test["voices"]]
    _check_voices(list(dict.fromkeys([*spec["voices"], *extra_voices])))
    utterances = _plan_from_spec(spec)
    names = _set_names(spec)
    with corpus_folder.staging(Path(out_dir), __name__) as staging:
        durations = _synthesise_all(utterances, names, staging, sample_rate, jobs)
        _write_manifests(staging, names, utterances, durations)
        _write_corpus_info(staging, spec, names, utterances, durations)
    return Path(out_dir)


def ensure_speech_corpus(out_dir: str | Path, *, jobs: int = 2, **spec: Any) -> Path:
    """`out_dir`, built unless it already holds a corpus of the same spec and generator."""
    wanted = _normalized_spec(**spec)
    manifests = [f"{name}.jsonl" for name in _set_names(wanted)]
    if corpus_folder.is_current(out_dir, __name__, wanted, manifests):
        return Path(out_dir)
    return build_speech_corpus(out_dir, jobs=jobs, **spec)


def read_corpus_info(out_dir: str | Path) -> dict | None:
    """The corpus.json of a complete speech corpus in `out_dir`, or None if there is none."""
    return corpus_folder.read_corpus_info(out_dir, __name__)


def plan_utterances(
    sentences: Sequence[str],
    counts: Mapping[str, int],
    *,
    condition: Condition,
    seed: int,
    held_out_sentences: int | None = None,
    extra_tests: Mapping[str, ExtraTest] | None = None,
) -> list[Utterance]:
    """What to synthesise, each utterance with a voice, a speed and a pitch (and noise and a
    room, if its condition asks) drawn from its own random stream.

    Sentences are split by text: the shuffled pool's first ``counts["test"]`` are the test
    sentences, the next ``counts["validation"]`` the validation ones, and training reads the
    pool after the first `held_out_sentences` (default: test + validation; more keeps a
    corpus built with the same seed but smaller held-out splits from training on the
    held-out sentences of a bigger one). Each extra test reads the test sentences in the same
    order (the first ones, or all of them and round again) under its own condition: with the
    corpus's voices, utterance i has the sentence and voice of test utterance i, so the two
    differ only in how it is spoken.
    """
    needed = counts["test"] + counts["validation"]
    held_out = needed if held_out_sentences is None else held_out_sentences
    if held_out < needed:
        raise ValueError(
            f"held_out_sentences={held_out} is fewer than the {needed} test+validation sentences"
        )
    if held_out >= len(sentences):
        raise ValueError(
            f"{held_out} held-out (test+validation) sentences leave none for training out of "
            f"{len(sentences)}"
        )
    order = np.random.default_rng(seed).permutation(len(sentences))
    shuffled = [sentences[i] for i in order]
    # Test comes first so that its sentences stay the same when the other sizes change.
    split_sentences = {
        "test": shuffled[: counts["test"]],
        "validation": shuffled[counts["test"] : needed],
        "train": shuffled[held_out:],
    }
    plan = [
        _plan_utterance(
            split,
            index,
            split_sentences[split],
            condition,
            np.random.default_rng([seed, SPLITS.index(split), index]),
        )
        for split in SPLITS
        for index in range(counts[split])
    ]
    for name, extra in (extra_tests or {}).items():
        if not split_sentences["test"]:
            raise ValueError(f"extra test {name!r} reads the test sentences, but num_test is 0")
        # Its own streams, keyed by its name: adding or dropping another set changes nothing.
        stream = [seed, len(SPLITS), zlib.crc32(name.encode())]
        plan += [
            _plan_utterance(
                name,
                index,
                split_sentences["test"],
                extra.condition,
                np.random.default_rng([*stream, index]),
            )
            for index in range(extra.num_utterances)
        ]
    return plan


def _plan_utterance(
    split: str,
    index: int,
    sentences: Sequence[str],
    condition: Condition,
    rng: np.random.Generator,
) -> Utterance:
    # A set larger than its sentence pool reuses sentences; shifting the voice on each pass
    # makes a repeated sentence come back in another voice.
    repeat, position = divmod(index, len(sentences))
    voices = condition.voices
    voice = voices[(position + repeat) % len(voices)]
    # Rounded so the value passed to the synthesiser and recorded in the manifest is the same.
    stretch = round(float(rng.uniform(*condition.stretch)), 2)
    pitch_factor = float(rng.uniform(*PITCH_FACTOR_RANGE))
    natural_f0 = NATURAL_F0_HZ.get(voice)
    f0_mean = round(natural_f0 * pitch_factor) if natural_f0 else None
    pitch = round(ESPEAK_PITCH * pitch_factor) if is_espeak_voice(voice) else None
    # Drawn after the draws every corpus makes, so they leave those unchanged.
    noise_snr = round(float(rng.uniform(*condition.noise_snr)), 1) if condition.noise_snr else None
    rt60 = round(float(rng.uniform(*condition.reverb_rt60)), 2) if condition.reverb_rt60 else None
    effects = noise_snr is not None or rt60 is not None
    effects_seed = int(rng.integers(2**32)) if effects else None
    return Utterance(
        split,
        index,
        sentences[position],
        voice,
        stretch,
        f0_mean,
        pitch=pitch,
        noise_snr=noise_snr,
        reverb_rt60=rt60,
        effects_seed=effects_seed,
    )


# --- spec ------------------------------------------------------------------------------------


def _normalized_spec(**spec: Any) -> dict[str, Any]:
    """The spec with defaults filled in, as plain JSON values (it is compared with the one
    stored in corpus.json)."""
    unknown = set(spec) - set(DEFAULT_SPEC)
    if unknown:
        raise TypeError(f"unknown speech corpus option(s): {sorted(unknown)}")
    full = {**DEFAULT_SPEC, **spec}
    normalized = {
        **{key: int(full[key]) for key in ("num_train", "num_validation", "num_test", "seed")},
        "voices": _voice_list(full["voices"], "voices"),
        "sample_rate": int(full["sample_rate"]),
        "noise_snr": _range(full["noise_snr"], "noise_snr", optional=True),
        "reverb_rt60": _range(full["reverb_rt60"], "reverb_rt60", optional=True, positive=True),
        "held_out_sentences": _optional_int(full["held_out_sentences"]),
    }
    extra_tests = full["extra_tests"] or {}
    if not isinstance(extra_tests, Mapping):
        raise TypeError(f"extra_tests must map test names to options, got {extra_tests!r}")
    normalized["extra_tests"] = {
        str(name): _extra_test_spec(str(name), options, normalized)
        for name, options in extra_tests.items()
    }
    normalized["version"] = GENERATOR_VERSION
    return normalized


def _extra_test_spec(name: str, options: Any, corpus: Mapping[str, Any]) -> dict[str, Any]:
    where = f"extra_tests.{name}"
    if not _SET_NAME.fullmatch(name) or name in SPLITS:
        raise ValueError(
            f"extra test name {name!r} must be letters, digits, '_' or '-' and not one of "
            f"{list(SPLITS)} (it names <name>.jsonl)"
        )
    options = dict(options or {})
    unknown = set(options) - set(_EXTRA_TEST_OPTIONS)
    if unknown:
        raise TypeError(
            f"unknown option(s) {sorted(unknown)} in {where}; choose from {_EXTRA_TEST_OPTIONS}"
        )
    count = options.get("num_utterances")
    count = corpus["num_test"] if count is None else int(count)
    if count < 1:
        raise ValueError(f"{where}.num_utterances must be at least 1, got {count}")
    return {
        "num_utterances": count,
        "voices": _voice_list(options.get("voices", corpus["voices"]), f"{where}.voices"),
        "stretch": _range(
            options.get("stretch", DURATION_STRETCH_RANGE), f"{where}.stretch", positive=True
        ),
        "noise_snr": _range(
            options.get("noise_snr", corpus["noise_snr"]), f"{where}.noise_snr", optional=True
        ),
        "reverb_rt60": _range(
            options.get("reverb_rt60", corpus["reverb_rt60"]),
            f"{where}.reverb_rt60",
            optional=True,
            positive=True,
        ),
    }


def _voice_list(voices: Any, where: str) -> list[str]:
    if isinstance(voices, str):
        raise TypeError(f"{where} must be a sequence of voice names, not the string {voices!r}")
    voices = [str(voice) for voice in voices]
    if not voices:
        raise ValueError(f"{where} must name at least one flite or espeak voice")
    empty = [voice for voice in voices if voice in ("", ESPEAK_PREFIX)]
    if empty:
        raise ValueError(f"{where} has an empty voice name: {empty}")
    return voices


def _range(
    value: Any, where: str, *, optional: bool = False, positive: bool = False
) -> list[float] | None:
    if value is None and optional:
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be [low, high], got {value!r}") from None
    if low > high or (positive and low <= 0):
        bound = "0 < low <= high" if positive else "low <= high"
        raise ValueError(f"{where} must be [low, high] with {bound}, got {value!r}")
    return [low, high]


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _set_names(spec: Mapping[str, Any]) -> list[str]:
    return [*SPLITS, *spec["extra_tests"]]


def _condition(options: Mapping[str, Any]) -> Condition:
    def pair(value: list[float] | None) -> tuple[float, float] | None:
        return None if value is None else (value[0], value[1])

    return Condition(
        tuple(options["voices"]),
        pair(options.get("stretch")) or DURATION_STRETCH_RANGE,
        pair(options["noise_snr"]),
        pair(options["reverb_rt60"]),
    )


def _plan_from_spec(spec: Mapping[str, Any]) -> list[Utterance]:
    extra_tests = {
        name: ExtraTest(options["num_utterances"], _condition(options))
        for name, options in spec["extra_tests"].items()
    }
    return plan_utterances(
        sentence_pool(),
        {split: spec[f"num_{split}"] for split in SPLITS},
        condition=_condition(spec),
        seed=spec["seed"],
        held_out_sentences=spec["held_out_sentences"],
        extra_tests=extra_tests,
    )


# --- synthesis -------------------------------------------------------------------------------


def _check_voices(voices: Sequence[str]) -> None:
    flite = [voice for voice in voices if not is_espeak_voice(voice)]
    espeak = [voice for voice in voices if is_espeak_voice(voice)]
    if flite:
        _check_flite(flite)
    if espeak:
        _check_espeak(espeak)


def _check_flite(voices: Sequence[str]) -> None:
    if shutil.which("flite") is None:
        raise FileNotFoundError("flite is not installed: install it with `apt-get install flite`")
    listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
    available = set(listing.split(":", 1)[-1].split())
    missing = [voice for voice in voices if voice not in available]
    if missing:
        raise ValueError(
            f"flite has no voice {missing}; available: {sorted(available)} (espeak-ng voices "
            f"are named {ESPEAK_PREFIX}<voice>)"
        )


def _check_espeak(voices: Sequence[str]) -> None:
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError(
            f"espeak-ng is not installed (needed for {list(voices)}): install it with "
            "`apt-get install espeak-ng`"
        )
    # espeak-ng falls back to a near match for an unknown voice ("no-such-voice" speaks
    # Norwegian) and ignores an unknown variant, so both are checked against its lists; a
    # listed voice it cannot load (an mbrola voice without mbrola) fails a dry run.
    languages, files = _espeak_listing("--voices", 1, 4)
    (variants,) = _espeak_listing("--voices=variant", 4)
    variants = {variant.removeprefix("!v/") for variant in variants}
    for voice in voices:
        base, _, variant = voice.removeprefix(ESPEAK_PREFIX).partition("+")
        if base not in languages | files:
            raise ValueError(
                f"espeak-ng has no voice {base!r} (voice {voice!r}); see `espeak-ng --voices`"
            )
        if variant and variant not in variants:
            raise ValueError(
                f"espeak-ng has no variant {variant!r} (voice {voice!r}); see "
                "`espeak-ng --voices=variant`"
            )
        probe = subprocess.run(["espeak-ng", "-v", base, "-q", "a"], capture_output=True, text=True)
        if probe.returncode != 0:
            raise ValueError(f"espeak-ng cannot use voice {voice!r}: {probe.stderr.strip()}")


def _espeak_listing(option: str, *columns: int) -> list[set[str]]:
    """The given columns of an ``espeak-ng --voices`` table, each as a set."""
    listing = subprocess.run(["espeak-ng", option], capture_output=True, text=True, check=True)
    rows = [line.split() for line in listing.stdout.splitlines()[1:]]
    return [{row[column] for row in rows if len(row) > column} for column in columns]


def _synthesise_all(
    utterances: Sequence[Utterance], names: Sequence[str], root: Path, sample_rate: int, jobs: int
) -> list[float]:
    for name in names:
        (root / "audio" / name).mkdir(parents=True)
    # Threads suffice: the work is in synthesiser subprocesses, which run in parallel outside
    # the GIL.
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda u: _synthesise(u, root, sample_rate), utterances))


def _synthesise(utterance: Utterance, root: Path, sample_rate: int) -> float:
    """Write one utterance as 16-bit mono wav at `sample_rate`; return its duration (s)."""
    path = root / utterance.audio_path
    _run_synthesiser(utterance, path)
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        audio = torchaudio.functional.resample(torch.from_numpy(audio), rate, sample_rate).numpy()
    if utterance.effects_seed is not None:
        audio = _room_and_noise(audio, utterance, sample_rate)
    # Resampling can overshoot full scale; clip rather than let the int16 conversion wrap.
    sf.write(path, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")
    return len(audio) / sample_rate


def _run_synthesiser(utterance: Utterance, path: Path) -> None:
    if is_espeak_voice(utterance.voice):
        command = ["espeak-ng", "-v", utterance.voice.removeprefix(ESPEAK_PREFIX)]
        command += ["-s", str(round(ESPEAK_WORDS_PER_MINUTE / utterance.duration_stretch))]
        command += ["-p", str(utterance.pitch), "-w", str(path), utterance.text]
    else:
        command = ["flite", "-voice", utterance.voice]
        command += ["--setf", f"duration_stretch={utterance.duration_stretch}"]
        if utterance.f0_mean is not None:
            command += ["--setf", f"int_f0_target_mean={utterance.f0_mean}"]
        command += ["-t", utterance.text, "-o", str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not path.is_file():
        raise RuntimeError(f"{command[0]} failed on {utterance}: {result.stderr.strip()}")


def _room_and_noise(audio: np.ndarray, utterance: Utterance, sample_rate: int) -> np.ndarray:
    """The utterance in a synthetic room (if it has an RT60), then with white noise at its SNR
    (if it has one), scaled down if that would clip."""
    generator = torch.Generator().manual_seed(utterance.effects_seed)
    waveform = torch.from_numpy(audio)
    if utterance.reverb_rt60 is not None:
        response = room_impulse_response(utterance.reverb_rt60, sample_rate, generator)
        wet = torchaudio.functional.fftconvolve(waveform, response)[: len(waveform)]
        # Same energy as the dry signal, so the room changes the sound and not the level.
        waveform = wet * (waveform.norm() / wet.norm().clamp_min(1e-8))
    if utterance.noise_snr is not None:
        noise = torch.randn(waveform.shape, generator=generator)
        snr = torch.tensor(utterance.noise_snr, dtype=waveform.dtype)
        waveform = torchaudio.functional.add_noise(waveform, noise, snr)
    peak = float(waveform.abs().max())
    return (waveform * min(1.0, 0.99 / peak) if peak > 0 else waveform).numpy()


def room_impulse_response(
    rt60: float, sample_rate: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A synthetic room impulse response: the direct path, then Gaussian noise whose envelope
    decays by 60 dB in ``rt60`` seconds (the late reverberation of a diffuse room), the tail
    carrying as much energy as the direct path."""
    length = max(2, round(rt60 * sample_rate))
    t = torch.arange(1, length) / sample_rate
    # exp(-ln(1000) t / rt60): the amplitude falls by 1000x (60 dB) at t = rt60.
    tail = torch.randn(length - 1, generator=generator) * torch.exp(-6.9078 * t / rt60)
    return torch.cat([torch.ones(1), tail / tail.norm()])


def _write_manifests(
    root: Path, names: Sequence[str], utterances: Sequence[Utterance], durations: Sequence[float]
) -> None:
    lines: dict[str, list[str]] = {name: [] for name in names}
    for utterance, duration in zip(utterances, durations, strict=True):
        entry = {
            "audio_filepath": utterance.audio_path,
            "text": utterance.text,
            "duration": duration,
            "voice": utterance.voice,
            "duration_stretch": utterance.duration_stretch,
            "f0_mean": utterance.f0_mean,
        }
        # Only utterances that have them carry these, so the default sets keep their format.
        for key in ("pitch", "noise_snr", "reverb_rt60"):
            if getattr(utterance, key) is not None:
                entry[key] = getattr(utterance, key)
        lines[utterance.split].append(json.dumps(entry) + "\n")
    for name in names:
        (root / f"{name}.jsonl").write_text("".join(lines[name]))


def _write_corpus_info(
    root: Path,
    spec: dict,
    names: Sequence[str],
    utterances: Sequence[Utterance],
    durations: Sequence[float],
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
            name: {"utterances": counts[name], "hours": round(seconds[name] / 3600, 4)}
            for name in names
        },
        sentence_pool=len(sentence_pool()),
        unique_train_sentences=len({u.text for u in utterances if u.split == "train"}),
    )


# --- CLI -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `mmembed-data speech` (the CLI adds --out)."""
    parser.add_argument("--num-train", type=int, default=4000, help="training utterances")
    parser.add_argument("--num-validation", type=int, default=200, help="validation utterances")
    parser.add_argument("--num-test", type=int, default=200, help="test utterances")
    parser.add_argument(
        "--voices",
        nargs="+",
        default=list(DEFAULT_VOICES),
        help=f"flite voices (see flite -lv) and/or {ESPEAK_PREFIX}<voice>[+<variant>] "
        "(see espeak-ng --voices=en)",
    )
    parser.add_argument("--seed", type=int, default=0, help="picks sentences, voices, speeds")
    parser.add_argument(
        "--extra-tests",
        type=json.loads,
        default=DEFAULT_EXTRA_TESTS,
        metavar="JSON",
        help="extra test manifests, e.g. '{\"test_fast\": {\"stretch\": [0.6, 0.7]}}' ('{}' for "
        "none; options: " + ", ".join(_EXTRA_TEST_OPTIONS) + ")",
    )
    parser.add_argument(
        "--noise-snr", type=float, nargs=2, metavar=("LOW", "HIGH"), help="white noise SNR, dB"
    )
    parser.add_argument(
        "--reverb-rt60", type=float, nargs=2, metavar=("LOW", "HIGH"), help="room RT60, seconds"
    )
    parser.add_argument(
        "--held-out-sentences",
        type=int,
        help="sentences never trained on (default: test + validation)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="parallel synthesiser processes")
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
        sample_rate=args.sample_rate,
        extra_tests=args.extra_tests,
        noise_snr=args.noise_snr,
        reverb_rt60=args.reverb_rt60,
        held_out_sentences=args.held_out_sentences,
        jobs=args.jobs,
    )
