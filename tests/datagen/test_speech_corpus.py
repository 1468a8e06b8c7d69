"""The flite speech corpus generator, its WordNet text source and the `mmembed-data` CLI."""

import json
import re
import shutil
from pathlib import Path

import pytest
import soundfile as sf

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
# All five default voices, so the 8 kHz kal voice exercises resampling.
TINY = {"num_train": 6, "num_validation": 3, "num_test": 3}
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


@needs_wordnet
def test_plan_splits_by_sentence_and_keeps_test_stable():
    pool = sentence_pool()
    counts = {"train": 3000, "validation": 200, "test": 200}
    plan = speech.plan_utterances(pool, counts, voices=speech.DEFAULT_VOICES, seed=0)
    texts = {split: {u.text for u in plan if u.split == split} for split in speech.SPLITS}
    assert [len(texts[split]) for split in ("train", "validation", "test")] == [3000, 200, 200]
    assert not texts["train"] & (texts["validation"] | texts["test"])
    assert not texts["validation"] & texts["test"]
    for utterance in plan:
        low, high = speech.DURATION_STRETCH_RANGE
        assert low <= utterance.duration_stretch <= high
        assert (utterance.f0_mean is None) == (utterance.voice == "rms")

    smaller = speech.plan_utterances(pool, {**counts, "train": 10}, voices=("slt",), seed=0)
    assert [u.text for u in smaller if u.split == "test"] == [
        u.text for u in plan if u.split == "test"
    ]
    other_seed = speech.plan_utterances(pool, counts, voices=("slt",), seed=1)
    assert {u.text for u in other_seed if u.split == "test"} != texts["test"]


def test_plan_reuses_sentences_in_another_voice_when_train_outgrows_them():
    sentences = [f"sentence number {word}" for word in ("one", "two", "three", "four", "five")]
    counts = {"train": 6, "validation": 1, "test": 1}
    plan = speech.plan_utterances(sentences, counts, voices=("slt", "rms"), seed=0)
    train = [u for u in plan if u.split == "train"]
    assert train[0].text == train[3].text  # 3 train sentences, so the 4th repeats the 1st
    assert train[0].voice != train[3].voice
    with pytest.raises(ValueError, match="none for training"):
        speech.plan_utterances(sentences, {**counts, "test": 4}, voices=("slt",), seed=0)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    if shutil.which("flite") is None or not (WORDNET_DIR / "data.noun").is_file():
        # `make setup` installs them; a missing package must fail the suite, not skip it
        pytest.fail("needs the Debian packages flite and wordnet-base: run `make system-deps`")
    return speech.build_speech_corpus(tmp_path_factory.mktemp("speech") / "corpus", **TINY)


def read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tiny_corpus_manifests_match_audio(tiny_corpus):
    voices = set()
    for split in speech.SPLITS:
        entries = read_manifest(tiny_corpus / f"{split}.jsonl")
        assert len(entries) == TINY[f"num_{split}"]
        for entry in entries:
            assert not Path(entry["audio_filepath"]).is_absolute()
            info = sf.info(tiny_corpus / entry["audio_filepath"])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert entry["duration"] == pytest.approx(info.frames / info.samplerate)
            assert 0.3 < entry["duration"] < 6.0
            assert TRANSCRIPT.fullmatch(entry["text"])
            voices.add(entry["voice"])
    assert voices == set(speech.DEFAULT_VOICES)
    info = speech.read_corpus_info(tiny_corpus)
    assert {split: c["utterances"] for split, c in info["counts"].items()} == {
        "train": 6,
        "validation": 3,
        "test": 3,
    }
    assert 0 < info["counts"]["train"]["hours"] < 0.01
    assert info["spec"]["voices"] == list(speech.DEFAULT_VOICES)


def test_tiny_corpus_keeps_held_out_sentences_out_of_train(tiny_corpus):
    def texts(split):
        return {entry["text"] for entry in read_manifest(tiny_corpus / f"{split}.jsonl")}

    assert not texts("train") & (texts("validation") | texts("test"))
    assert not texts("validation") & texts("test")


def test_same_spec_gives_identical_bytes(tiny_corpus, tmp_path):
    again = speech.build_speech_corpus(tmp_path / "again", **TINY, jobs=1)
    files = sorted(p.relative_to(tiny_corpus) for p in tiny_corpus.rglob("*") if p.is_file())
    assert len(files) == 12 + 4  # wavs + three manifests + corpus.json
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (tiny_corpus / name).read_bytes() == (again / name).read_bytes(), name


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
    assert not list(tmp_path.glob(".corpus.*"))  # no staging or old folders left behind


@needs_flite
@needs_wordnet
def test_failed_build_leaves_no_corpus(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(speech, "synthesise_all", interrupted)
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


@needs_flite
@needs_wordnet
def test_cli_builds_speech_corpus(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["speech", "--out", str(out), "--num-train", "2", "--num-validation", "1"]
    cli.main([*argv, "--num-test", "1", "--voices", "kal16", "awb", "--seed", "3"])
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    assert "train: 2 utterances" in printed and "test: 1 utterances" in printed
    info = speech.read_corpus_info(out)
    assert info["spec"]["voices"] == ["kal16", "awb"] and info["spec"]["seed"] == 3


def test_cli_defaults():
    parser = cli.build_parser()
    args = parser.parse_args(["speech"])
    assert args.out == Path("data/generated/speech")
    assert args.num_train == 4000 and args.voices == list(speech.DEFAULT_VOICES)
    with pytest.raises(SystemExit):
        parser.parse_args(["nope"])
