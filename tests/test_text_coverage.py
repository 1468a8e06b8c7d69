"""Text a tokenizer cannot represent is counted and reported per split, never dropped silently."""

import json

import pytest

from helpers.bad_files import CJK_TEXT, DIGIT_TEXT, MIXED_TEXT, write_jsonl, write_wav
from mmembed.data.manifest import read_manifest
from mmembed.data.speech import SpeechDataModule, index_utterances
from mmembed.report import data_report, write_metrics
from mmembed.text import normalize_text, train_tokenizer
from mmembed.text.coverage import UnrepresentedTextWarning, text_coverage
from mmembed.text.tokenizers import dropped_characters


def test_dropped_characters_are_the_letters_and_digits_normalisation_removes():
    assert dropped_characters("Café, naïve!") == []  # accents fold, punctuation is by design
    assert dropped_characters(MIXED_TEXT) == ["東", "京"]
    assert dropped_characters("straße ½") == ["ß"]  # "½" folds to the digits "1⁄2"
    assert normalize_text("room 7") == "room 7"  # digits stay digits


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_coverage_counts_dropped_and_unknown_characters_with_examples(kind):
    tokenizer = train_tokenizer(["the cat sat on the mat", "a dog in a room"], kind=kind)
    items = [
        ("v.jsonl:1", "the cat"),
        ("v.jsonl:2", MIXED_TEXT),
        ("v.jsonl:3", DIGIT_TEXT),
        ("v.jsonl:4", "room 77"),
    ]
    coverage = text_coverage(items, tokenizer)
    assert (coverage.texts, coverage.affected) == (4, 3)
    assert dict(coverage.dropped) == {"東": 1, "京": 1}
    assert dict(coverage.unknown) == {"7": 3, "p": 1}  # "open": no "p" in the training texts
    summary = coverage.summary()
    assert "3 of 4 texts" in summary and "2 dropped by text normalisation" in summary
    assert "4 outside the tokenizer's vocabulary, read as <unk> {'7': 3, 'p': 1}" in summary
    assert coverage.examples[0] == f"v.jsonl:2: {MIXED_TEXT!r}"
    assert not text_coverage([("x", "the cat")], tokenizer)


def test_all_cjk_transcript_is_skipped_as_unrepresentable_not_empty(tmp_path):
    write_wav(tmp_path / "a.wav", 0.5)
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"audio_filepath": "a.wav", "text": CJK_TEXT, "duration": 0.5},
            {"audio_filepath": "a.wav", "text": "?!", "duration": 0.5},
            {"audio_filepath": "a.wav", "text": "fine", "duration": 0.5},
        ],
    )
    skipped = []
    with pytest.warns(UserWarning):
        kept = index_utterances(read_manifest(manifest), manifest, skipped=skipped)
    assert [u.text for u in kept] == ["fine"]
    assert [item.kind for item in skipped] == ["unrepresentable transcript", "empty transcript"]
    assert CJK_TEXT in skipped[0].reason


def test_each_split_reports_its_unrepresented_text_once_and_in_the_final_report(tmp_path):
    write_wav(tmp_path / "a.wav", 0.5)
    texts = {"train": ["the cat sat", "on a mat"], "validation": [MIXED_TEXT, "the mat"],
             "test": [DIGIT_TEXT, "a cat"]}  # fmt: skip
    for split, lines in texts.items():
        records = [{"audio_filepath": "a.wav", "text": t, "duration": 0.5} for t in lines]
        write_jsonl(tmp_path / f"{split}.jsonl", records)
    data = SpeechDataModule(str(tmp_path))
    tokenizer = train_tokenizer(data.training_texts())
    with pytest.warns(UnrepresentedTextWarning) as caught:
        data.set_tokenizer(tokenizer)  # train exists already: checked now
        data.prepare_splits()  # validation and test: checked when built
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages  # train is fully represented
    assert messages[0].startswith("validation: 1 of 2 texts") and "'東': 1" in messages[0]
    assert "validation.jsonl:1" in messages[0]
    assert messages[1].startswith("test: 1 of 2 texts") and "read as <unk>" in messages[1]
    lines = data_report(data)
    assert "text the model cannot represent" in lines[0]
    assert any(line.startswith("  test: 1 of 2 texts") for line in lines)
    saved = json.loads(write_metrics(tmp_path / "metrics.json", {"x": 1.0}, None, data).read_text())
    assert saved["data"]["unrepresented_text"]["validation"]["dropped"] == {"東": 1, "京": 1}
    assert set(saved["data"]["unrepresented_text"]["test"]["unknown"]) >= {"7"}
