"""The speech corpus generator (flite, espeak-ng), its WordNet text source and the CLI."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmembed.datagen import cli, speech
from mmembed.datagen.text_corpus import (
    WORDNET_DIR,
    normalize_sentence,
    sentence_pool,
    wordnet_examples,
)

needs_wordnet = pytest.mark.skipif(
    not (WORDNET_DIR / "data.noun").is_file(), reason="needs `apt-get install wordnet-base`"
)
needs_flite = pytest.mark.skipif(
    shutil.which("flite") is None, reason="needs `apt-get install flite`"
)
# All five default voices, so the 8 kHz kal voice exercises resampling, and the default extra
# tests (one utterance per test sentence each: test_slow, and test_espeak at 22.05 kHz).
TINY = {"num_train": 6, "num_validation": 3, "num_test": 3}
SETS = (*speech.SPLITS, *speech.DEFAULT_EXTRA_TESTS)
TRANSCRIPT = re.compile(r"[a-z']+( [a-z']+)*")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The old man was nodding in his chair", "the old man was nodding in his chair"),
        ("I know better.", "i know better"),
        ("we're now quits!", "we're now quits"),
        ("after the drive, we slept", "after the drive we slept"),
        ("the never-ending search", "the never ending search"),
        ("raise the students' spirits", "raise the students spirits"),
        ("it's 10 miles away", None),  # digits
        ("Mr. Smith left early", None),  # abbreviation
        ("he bought a new TV set", None),  # acronym spelled letter by letter
        ("`rays' is a word", None),  # meta-linguistic quoting
        ("the price rose 5%", None),
        ("say it with a b sound", None),  # lone letter
        ("hmm that is odd", None),  # no vowel
    ],
)
def test_normalize_sentence(raw, expected):
    assert normalize_sentence(raw) == expected


@needs_wordnet
def test_sentence_pool_is_short_normalised_unique_sentences():
    pool = sentence_pool()
    assert len(pool) > 10_000
    assert list(pool) == sorted(set(pool))
    for sentence in pool:
        assert TRANSCRIPT.fullmatch(sentence), sentence
        assert 3 <= len(sentence.split()) <= 10 and len(sentence) <= 50


def test_missing_wordnet_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        wordnet_examples(tmp_path)


DEFAULT_CONDITION = speech.Condition(speech.DEFAULT_VOICES)
SLT = speech.Condition(("slt",))


@needs_wordnet
def test_plan_splits_by_sentence_and_keeps_test_stable():
    pool = sentence_pool()
    counts = {"train": 3000, "validation": 200, "test": 200}
    plan = speech.plan_utterances(pool, counts, condition=DEFAULT_CONDITION, seed=0)
    texts = {split: {u.text for u in plan if u.split == split} for split in speech.SPLITS}
    assert [len(texts[split]) for split in ("train", "validation", "test")] == [3000, 200, 200]
    assert not texts["train"] & (texts["validation"] | texts["test"])
    assert not texts["validation"] & texts["test"]
    for utterance in plan:
        low, high = speech.DURATION_STRETCH_RANGE
        assert low <= utterance.duration_stretch <= high
        assert (utterance.f0_mean is None) == (utterance.voice == "rms")

    smaller = speech.plan_utterances(pool, {**counts, "train": 10}, condition=SLT, seed=0)
    assert [u.text for u in smaller if u.split == "test"] == [
        u.text for u in plan if u.split == "test"
    ]
    other_seed = speech.plan_utterances(pool, counts, condition=SLT, seed=1)
    assert {u.text for u in other_seed if u.split == "test"} != texts["test"]


def test_plan_extra_tests_and_held_out_sentences():
    sentences = [f"sentence number {i}" for i in range(20)]
    counts = {"train": 30, "validation": 2, "test": 3}
    slow = speech.Condition(("awb",), stretch=(1.4, 1.5), noise_snr=(5.0, 10.0))
    plan = speech.plan_utterances(
        sentences,
        counts,
        condition=SLT,
        seed=0,
        held_out_sentences=8,
        extra_tests={"test_slow": speech.ExtraTest(7, slow)},
    )
    texts = {name: [u.text for u in plan if u.split == name] for name in (*counts, "test_slow")}
    order = np.random.default_rng(0).permutation(len(sentences))
    reserved = {sentences[i] for i in order[:8]}
    assert set(texts["test"]) | set(texts["validation"]) < reserved
    assert not set(texts["train"]) & reserved  # held_out_sentences keeps all 8 out
    # the test sentences in test's order, round again when there are more utterances
    assert texts["test_slow"] == [texts["test"][i % 3] for i in range(7)]
    for utterance in plan:
        if utterance.split == "test_slow":
            assert utterance.voice == "awb" and 1.4 <= utterance.duration_stretch <= 1.5
            assert 5 <= utterance.noise_snr <= 10 and utterance.effects_seed is not None
        else:
            assert utterance.noise_snr is None and utterance.effects_seed is None
    # an extra test changes nothing else
    alone = speech.plan_utterances(sentences, counts, condition=SLT, seed=0, held_out_sentences=8)
    assert alone == [u for u in plan if u.split != "test_slow"]
    with pytest.raises(ValueError, match="fewer than the 5 test"):
        speech.plan_utterances(sentences, counts, condition=SLT, seed=0, held_out_sentences=4)
    with pytest.raises(ValueError, match="num_test is 0"):
        speech.plan_utterances(
            sentences,
            {**counts, "test": 0},
            condition=SLT,
            seed=0,
            extra_tests={"test_slow": speech.ExtraTest(1, slow)},
        )


@pytest.mark.parametrize(
    ("extra_tests", "error", "message"),
    [
        ({"train": {}}, ValueError, "not one of"),
        ({"test slow": {}}, ValueError, "letters, digits"),
        ({"test_x": {"speed": [1, 2]}}, TypeError, r"unknown option\(s\) \['speed'\]"),
        ({"test_x": {"stretch": [1.5, 1.2]}}, ValueError, "extra_tests.test_x.stretch"),
        ({"test_x": {"voices": "slt"}}, TypeError, "not the string"),
        ({"test_x": {"num_utterances": 0}}, ValueError, "at least 1"),
        ([1, 2], TypeError, "must map test names"),
    ],
)
def test_bad_extra_tests_are_named(tmp_path, extra_tests, error, message):
    with pytest.raises(error, match=message):
        speech.ensure_speech_corpus(tmp_path / "c", num_train=1, extra_tests=extra_tests)
    assert not (tmp_path / "c").exists()


def test_room_and_noise_give_the_asked_snr_and_decay():
    rate = 16000
    response = speech.room_impulse_response(0.4, rate, torch.Generator().manual_seed(0))
    assert len(response) == round(0.4 * rate) and response[0] == 1
    assert response[1:].norm() == pytest.approx(1.0)  # tail energy = direct-path energy
    first, last = response[1:801].abs().mean(), response[-800:].abs().mean()
    assert 20 * torch.log10(first / last) > 45  # ~60 dB of decay over the RT60

    tone = (0.3 * np.sin(np.arange(rate) * 0.07)).astype("float32")

    def effects(**kwargs):
        utterance = speech.Utterance("train", 0, "x", "slt", 1.0, None, effects_seed=1, **kwargs)
        return speech._room_and_noise(tone.copy(), utterance, rate)

    noisy = effects(noise_snr=10.0)
    snr = 10 * np.log10((tone**2).sum() / ((noisy - tone) ** 2).sum())
    assert snr == pytest.approx(10.0, abs=0.3)
    wet = effects(reverb_rt60=0.5)
    assert wet.shape == tone.shape and np.abs(wet).max() <= 0.99
    assert (wet**2).sum() == pytest.approx((tone**2).sum(), rel=0.05)  # level kept
    assert np.abs(wet - tone).mean() > 0.05  # but the sound changed
    np.testing.assert_array_equal(effects(reverb_rt60=0.5), wet)  # seeded


def test_new_domain_corpus_with_espeak_noise_and_a_room(tmp_path):
    _needs_synthesisers()
    spec = dict(
        num_train=2,
        num_validation=1,
        num_test=1,
        voices=["espeak:en-us", "espeak:en-gb+m3"],
        noise_snr=[10, 20],
        reverb_rt60=[0.2, 0.5],
        held_out_sentences=400,
        extra_tests={},
    )
    corpus = speech.build_speech_corpus(tmp_path / "new", **spec)
    assert sorted(p.name for p in corpus.glob("*.jsonl")) == [
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]
    for split in speech.SPLITS:
        for entry in read_manifest(corpus / f"{split}.jsonl"):
            assert speech.is_espeak_voice(entry["voice"])
            assert 10 <= entry["noise_snr"] <= 20 and 0.2 <= entry["reverb_rt60"] <= 0.5
            audio, rate = sf.read(corpus / entry["audio_filepath"])
            assert rate == 16000 and 0.05 < np.abs(audio).max() <= 0.99
    # held_out_sentences=400: no training sentence is a test/validation sentence of the default
    # corpus (same seed), so a model trained there can be fine-tuned here and tested on both.
    default_plan = speech.plan_utterances(
        speech.sentence_pool(),
        {"train": 0, "validation": 200, "test": 200},
        condition=DEFAULT_CONDITION,
        seed=0,
    )
    default_held_out = {u.text for u in default_plan}
    train = {e["text"] for e in read_manifest(corpus / "train.jsonl")}
    assert not train & default_held_out
    assert {e["text"] for e in read_manifest(corpus / "test.jsonl")} <= default_held_out

    sentences = [f"sentence number {word}" for word in ("one", "two", "three", "four", "five")]
    counts = {"train": 6, "validation": 1, "test": 1}
    plan = speech.plan_utterances(
        sentences, counts, condition=speech.Condition(("slt", "rms")), seed=0
    )
    train = [u for u in plan if u.split == "train"]
    assert train[0].text == train[3].text  # 3 train sentences, so the 4th repeats the 1st
    assert train[0].voice != train[3].voice
    with pytest.raises(ValueError, match="none for training"):
        speech.plan_utterances(sentences, {**counts, "test": 4}, condition=SLT, seed=0)


def _needs_synthesisers():
    missing = [tool for tool in ("flite", "espeak-ng") if shutil.which(tool) is None]
    if missing or not (WORDNET_DIR / "data.noun").is_file():
        # `make setup` installs them; a missing package must fail the suite, not skip it
        pytest.fail(
            "needs the Debian packages flite, espeak-ng and wordnet-base: run `make system-deps`"
        )


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    _needs_synthesisers()
    return speech.build_speech_corpus(tmp_path_factory.mktemp("speech") / "corpus", **TINY)


def read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tiny_corpus_manifests_match_audio(tiny_corpus):
    voices = {name: set() for name in SETS}
    for name in SETS:
        entries = read_manifest(tiny_corpus / f"{name}.jsonl")
        assert len(entries) == TINY.get(f"num_{name}", TINY["num_test"])
        for entry in entries:
            assert not Path(entry["audio_filepath"]).is_absolute()
            info = sf.info(tiny_corpus / entry["audio_filepath"])
            # espeak-ng writes 22.05 kHz: resampled to the corpus rate like flite's kal
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert entry["duration"] == pytest.approx(info.frames / info.samplerate)
            assert 0.3 < entry["duration"] < 8.0
            assert TRANSCRIPT.fullmatch(entry["text"])
            voices[name].add(entry["voice"])
    assert voices["train"] == set(speech.DEFAULT_VOICES)
    assert voices["test_slow"] <= set(speech.DEFAULT_VOICES)
    assert voices["test_espeak"] == set(speech.DEFAULT_ESPEAK_VOICES[:3])  # 3 utterances
    info = speech.read_corpus_info(tiny_corpus)
    assert {split: c["utterances"] for split, c in info["counts"].items()} == {
        "train": 6,
        "validation": 3,
        "test": 3,
        "test_slow": 3,
        "test_espeak": 3,
    }
    assert 0 < info["counts"]["train"]["hours"] < 0.01
    assert info["spec"]["voices"] == list(speech.DEFAULT_VOICES)


def test_tiny_corpus_keeps_held_out_sentences_out_of_train(tiny_corpus):
    def texts(split):
        return {entry["text"] for entry in read_manifest(tiny_corpus / f"{split}.jsonl")}

    assert not texts("train") & (texts("validation") | texts("test"))
    assert not texts("validation") & texts("test")
    # The extra tests read exactly the test sentences (one utterance each), never trained on.
    assert texts("test_slow") == texts("test_espeak") == texts("test")


def test_extra_tests_are_spoken_as_declared(tiny_corpus):
    test = {e["text"]: e for e in read_manifest(tiny_corpus / "test.jsonl")}
    low, high = speech.DEFAULT_EXTRA_TESTS["test_slow"]["stretch"]
    assert high > low > speech.DURATION_STRETCH_RANGE[1]  # slower than anything in training
    for entry in read_manifest(tiny_corpus / "test_slow.jsonl"):
        assert low <= entry["duration_stretch"] <= high
        assert "pitch" not in entry  # a flite utterance: the manifest keeps the old format
        # the same sentence and voice as test, said more slowly
        same = test[entry["text"]]
        assert entry["voice"] == same["voice"]
        assert entry["duration"] > same["duration"] * 1.1
    for entry in read_manifest(tiny_corpus / "test_espeak.jsonl"):
        assert speech.is_espeak_voice(entry["voice"]) and entry["f0_mean"] is None
        assert 40 <= entry["pitch"] <= 60
        audio, rate = sf.read(tiny_corpus / entry["audio_filepath"])
        assert rate == 16000 and np.abs(audio).max() > 0.05  # speech, not silence


def _files(corpus: Path) -> list[Path]:
    return sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())


def test_same_spec_gives_identical_bytes(tiny_corpus, tmp_path):
    again = speech.build_speech_corpus(tmp_path / "again", **TINY, jobs=1)
    files = _files(tiny_corpus)
    assert len(files) == 12 + 6 + 6  # wavs + extra-test wavs + five manifests + corpus.json
    assert files == _files(again)
    for name in files:
        assert (tiny_corpus / name).read_bytes() == (again / name).read_bytes(), name


def test_extra_tests_leave_the_other_sets_unchanged(tiny_corpus, tmp_path):
    # What the default corpus gained (its extra tests) must not change the sets it had.
    plain = speech.build_speech_corpus(tmp_path / "plain", **TINY, extra_tests={})
    shared = [name for name in _files(plain) if name.name != "corpus.json"]
    assert len(shared) == 12 + 3
    for name in shared:
        assert (plain / name).read_bytes() == (tiny_corpus / name).read_bytes(), name
    added = set(_files(tiny_corpus)) - set(_files(plain))
    extra = set(speech.DEFAULT_EXTRA_TESTS)
    assert len(added) == 6 + 2
    assert all(n.stem in extra if n.suffix == ".jsonl" else n.parts[1] in extra for n in added)


@needs_flite
@needs_wordnet
def test_ensure_skips_same_spec_and_rebuilds_changed_spec(tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    small = {"num_train": 2, "num_validation": 1, "num_test": 1, "voices": ("slt",)}
    speech.ensure_speech_corpus(out, **small)
    assert speech.read_corpus_info(out)["counts"]["train"]["utterances"] == 2

    def fail_build(*args, **kwargs):
        raise AssertionError("rebuilt a corpus that was already there")

    with monkeypatch.context() as patch:
        patch.setattr(speech, "build_speech_corpus", fail_build)
        assert speech.ensure_speech_corpus(out, **small, jobs=1) == out

    speech.ensure_speech_corpus(out, **{**small, "num_train": 3})
    assert speech.read_corpus_info(out)["counts"]["train"]["utterances"] == 3
    assert len(read_manifest(out / "train.jsonl")) == 3
    # a missing extra manifest makes the corpus incomplete: rebuilt
    (out / "test_espeak.jsonl").unlink()
    speech.ensure_speech_corpus(out, **{**small, "num_train": 3})
    assert (out / "test_espeak.jsonl").is_file()
    assert not list(tmp_path.glob(".corpus.*"))  # no staging or old folders left behind


@needs_flite
@needs_wordnet
def test_failed_build_leaves_no_corpus(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(speech, "_synthesise_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        speech.build_speech_corpus(tmp_path / "corpus", num_train=1, num_validation=1, num_test=1)
    assert list(tmp_path.iterdir()) == []


@needs_flite
def test_refuses_to_replace_a_folder_that_is_not_a_corpus(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds no corpus.json from mmembed.datagen.speech"):
        speech.build_speech_corpus(tmp_path, num_train=1, num_validation=1, num_test=1)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@needs_flite
def test_unknown_voice_is_named(tmp_path):
    with pytest.raises(ValueError, match="no_such_voice"):
        speech.build_speech_corpus(tmp_path / "c", voices=("slt", "no_such_voice"))


@pytest.mark.parametrize(
    ("voice", "message"),
    [
        ("espeak:no-such-voice", "no voice 'no-such-voice'"),  # not Norwegian ("no")
        ("espeak:en-us+nobody", "no variant 'nobody'"),
        ("espeak:", "empty voice name"),
    ],
)
def test_unknown_espeak_voice_is_named(tmp_path, voice, message):
    _needs_synthesisers()
    tiny = {"num_train": 1, "num_validation": 1, "num_test": 1}
    with pytest.raises(ValueError, match=re.escape(message)):
        speech.build_speech_corpus(
            tmp_path / "c", **tiny, extra_tests={"test_x": {"voices": [voice]}}
        )
    assert not (tmp_path / "c").exists()


@needs_flite
@needs_wordnet
def test_cli_builds_speech_corpus(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["speech", "--out", str(out), "--num-train", "2", "--num-validation", "1"]
    cli.main([*argv, "--num-test", "1", "--voices", "kal16", "awb", "--seed", "3"])
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    assert "train: 2 utterances" in printed and "test: 1 utterances" in printed
    assert "test_slow: 1 utterances" in printed and "test_espeak: 1 utterances" in printed
    info = speech.read_corpus_info(out)
    assert info["spec"]["voices"] == ["kal16", "awb"] and info["spec"]["seed"] == 3

    # An extra test from the command line (JSON), replacing the default ones.
    cli.main([*argv, "--num-test", "1", "--voices", "slt", "--extra-tests",
              '{"test_fast": {"stretch": [0.6, 0.7], "voices": ["awb"]}}'])  # fmt: skip
    assert "test_fast: 1 utterances" in capsys.readouterr().out
    assert sorted(p.stem for p in out.glob("test*.jsonl")) == ["test", "test_fast"]
    (fast,) = read_manifest(out / "test_fast.jsonl")
    assert fast["voice"] == "awb" and 0.6 <= fast["duration_stretch"] <= 0.7


def test_cli_defaults():
    parser = cli.build_parser()
    args = parser.parse_args(["speech"])
    assert args.out == Path("data/generated/speech")
    assert args.num_train == 4000 and args.voices == list(speech.DEFAULT_VOICES)
    assert args.extra_tests == speech.DEFAULT_EXTRA_TESTS and args.noise_snr is None
    with pytest.raises(SystemExit):
        parser.parse_args(["nope"])
