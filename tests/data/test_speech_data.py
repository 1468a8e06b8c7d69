"""Speech data: manifest parsing, utterance checks, duration bucketing, batches."""

import json
import math

import numpy as np
import pytest
import soundfile
import torch

from helpers.bad_files import latin1_text
from mmembed.data import sampling
from mmembed.data.manifest import ManifestError, read_manifest
from mmembed.data.sampling import DurationBucketBatchSampler
from mmembed.data.skips import SkippedItem
from mmembed.data.speech import (
    AudioSkipWarning,
    SpeechDataModule,
    collate_speech,
    index_utterances,
    load_audio,
)
from mmembed.text import train_tokenizer


def _write_wav(path, seconds, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = 0.1 * np.sin(np.arange(int(seconds * rate)) * 0.05).astype("float32")
    soundfile.write(path, samples, rate)
    return path


def _write_manifest(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_manifest_resolves_relative_paths_and_keeps_absolute(tmp_path):
    absolute = _write_wav(tmp_path / "elsewhere" / "b.wav", 0.5)
    manifest = _write_manifest(
        tmp_path / "m.jsonl",
        [
            {"audio_filepath": "audio/a.wav", "text": "hi", "duration": 1.0},
            {"audio_filepath": str(absolute), "text": "yo", "duration": 0.5},
        ],
    )
    entries = read_manifest(manifest)
    assert entries[0].audio_path == tmp_path / "audio" / "a.wav"
    assert entries[1].audio_path == absolute
    assert [e.line for e in entries] == [1, 2]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"m\.jsonl:2: not valid JSON"),
        ('{"audio_filepath": "a.wav", "text": "x"}', r"m\.jsonl:2: missing key\(s\) duration"),
        ('{"audio_filepath": "a.wav", "text": 3, "duration": 1}', r"m\.jsonl:2: text must be"),
        ('{"audio_filepath": "a.wav", "text": "x", "duration": -1}', r"m\.jsonl:2: duration"),
        ("[1, 2]", r"m\.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_manifest_lines_fail_naming_file_and_line(tmp_path, line, message):
    good = json.dumps({"audio_filepath": "a.wav", "text": "ok", "duration": 1.0})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(f"{good}\n{line}\n")
    with pytest.raises(ManifestError, match=message):
        read_manifest(manifest)


def test_missing_manifest_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_manifest(tmp_path / "nope.jsonl")


@pytest.fixture
def mixed_manifest(tmp_path):
    _write_wav(tmp_path / "good.wav", 1.0)
    _write_wav(tmp_path / "long.wav", 3.0)
    _write_wav(tmp_path / "empty.wav", 0.0)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage")
    _write_wav(tmp_path / "truncated.wav", 0.4)
    records = [
        {"audio_filepath": "good.wav", "text": "Good one!", "duration": 1.0},
        {"audio_filepath": "long.wav", "text": "too long", "duration": 3.0},
        {"audio_filepath": "empty.wav", "text": "empty audio", "duration": 0.0},
        {"audio_filepath": "corrupt.wav", "text": "corrupt", "duration": 1.0},
        {"audio_filepath": "missing.wav", "text": "missing", "duration": 1.0},
        {"audio_filepath": "truncated.wav", "text": "cut short", "duration": 2.0},
        {"audio_filepath": "good.wav", "text": " ?! ", "duration": 1.0},
        {"audio_filepath": "good.wav", "text": "x" * 50, "duration": 1.0},
    ]
    return _write_manifest(tmp_path / "m.jsonl", records)


def test_unusable_utterances_are_skipped_with_one_counted_warning(mixed_manifest):
    with pytest.warns(AudioSkipWarning) as caught:
        kept = index_utterances(
            read_manifest(mixed_manifest), mixed_manifest, max_duration=2.5, max_text_chars=20
        )
    assert [u.text for u in kept] == ["good one"]
    message = str(caught[0].message)
    assert "skipped 7 of 8 utterances" in message
    for name in ("long.wav", "empty.wav", "corrupt.wav", "missing.wav", "truncated.wav"):
        assert name in message
    assert "m.jsonl:7" in message and "empty transcript" in message
    assert "m.jsonl:8" in message and "transcript too long" in message
    assert "truncated or mislabelled" in message


def test_strict_mode_raises_on_the_first_bad_utterance(mixed_manifest):
    with pytest.raises(ValueError, match=r"m\.jsonl:2: .*long\.wav: duration out of range"):
        index_utterances(
            read_manifest(mixed_manifest), mixed_manifest, max_duration=2.5, strict=True
        )


def test_load_audio_mixes_down_and_resamples(tmp_path):
    stereo = np.stack([np.ones(8000), -np.ones(8000) * 0.5], axis=1).astype("float32")
    soundfile.write(tmp_path / "s.flac", stereo, 8000)
    waveform = load_audio(tmp_path / "s.flac", 16000)
    assert waveform.ndim == 1 and abs(len(waveform) - 16000) <= 1
    assert waveform[4000:12000].mean().item() == pytest.approx(0.25, abs=1e-2)


def test_bucket_sampler_covers_every_item_once_within_the_budget():
    durations = [0.5 + (i * 37 % 23) / 10 for i in range(200)]
    sampler = DurationBucketBatchSampler(durations, max_batch_duration=12.0, bucket_size=64)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for batch in batches:
        assert len(batch) * max(durations[i] for i in batch) <= 12.0
    assert len(sampler) == len(batches)
    sampler.set_epoch(1)
    assert list(sampler) != batches, "a new epoch must reshuffle"
    sampler.set_epoch(0)
    assert list(sampler) == batches, "the same epoch must give the same batches"


def test_bucket_sampler_gives_every_epoch_as_many_batches_as_lightning_counted():
    # Lightning takes len() once and validates after that many batches: an epoch with one
    # batch fewer would silently skip its validation
    generator = torch.Generator().manual_seed(0)
    durations = (0.5 + 4.5 * torch.rand(600, generator=generator)).tolist()
    sampler = DurationBucketBatchSampler(durations, max_batch_duration=20.0, bucket_size=128)
    counted = len(sampler)
    epochs = []
    for epoch in range(8):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert [len(batches) for batches in epochs] == [counted] * 8
    assert len({tuple(map(tuple, batches)) for batches in epochs}) == 8  # reshuffled each epoch
    for batches in epochs:
        assert sorted(i for b in batches for i in b) == list(range(600))


def test_bucket_sampler_shards_batches_equally_across_ranks(monkeypatch):
    durations = [1.0] * 10
    sampler = DurationBucketBatchSampler(durations, max_batch_duration=3.0, shuffle=False)
    everything = list(sampler)  # 4 batches of <= 3
    shards = []
    for rank in range(3):
        monkeypatch.setattr(sampling, "rank_and_world", lambda rank=rank: (rank, 3))
        shards.append(list(sampler))
    assert {len(s) for s in shards} == {math.ceil(len(everything) / 3)}
    assert {tuple(b) for s in shards for b in s} == {tuple(b) for b in everything}


def test_bucket_sampler_rejects_items_longer_than_a_batch():
    with pytest.raises(ValueError, match="longer than max_batch_duration"):
        DurationBucketBatchSampler([1.0, 5.0], max_batch_duration=2.0)


def test_collate_pads_audio_and_tokens_and_leaves_out_failed_items():
    failed = SkippedItem("m.jsonl:2: b.flac", "unreadable audio", "cannot read audio")
    items = [
        {"waveform": torch.ones(5), "tokens": torch.tensor([4, 5]), "text": "ab", "path": "a"},
        failed,
        {"waveform": torch.ones(3), "tokens": torch.tensor([6, 7, 8]), "text": "cde", "path": "c"},
    ]
    batch = collate_speech(items)
    assert batch["waveforms"].shape == (2, 5) and batch["waveforms"][1, 3:].abs().sum() == 0
    assert batch["waveform_lengths"].tolist() == [5, 3]
    assert batch["tokens"].tolist() == [[4, 5, 0], [6, 7, 8]]
    assert batch["token_lengths"].tolist() == [2, 3]
    assert batch["paths"] == ["a", "c"] and batch["skipped"] == [failed]
    assert collate_speech([failed]) == {"paths": [], "skipped": [failed]}


def test_datamodule_batches_tokenised_utterances(tmp_path):
    records = []
    for i, text in enumerate(["one two", "three", "four five six"]):
        _write_wav(tmp_path / f"{i}.wav", 0.5 + i * 0.25)
        records.append({"audio_filepath": f"{i}.wav", "text": text, "duration": 0.5 + i * 0.25})
    for split in ("train", "validation", "test"):
        _write_manifest(tmp_path / f"{split}.jsonl", records)
    datamodule = SpeechDataModule(str(tmp_path), max_batch_duration=10.0)
    tokenizer = train_tokenizer(datamodule.training_texts(), kind="char")
    datamodule.set_tokenizer(tokenizer)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    assert sum(len(b["texts"]) for b in batches) == 3
    batch = batches[0]
    for row, text in enumerate(batch["texts"]):
        length = batch["token_lengths"][row]
        assert tokenizer.decode(batch["tokens"][row, :length].tolist()) == text


def test_extra_test_manifests_get_a_loader_each_after_the_main_test(tmp_path):
    records = []
    for i, text in enumerate(["one two", "three", "four five six", "seven"]):
        _write_wav(tmp_path / f"{i}.wav", 0.5)
        records.append({"audio_filepath": f"{i}.wav", "text": text, "duration": 0.5})
    for split, rows in [("train", records), ("validation", records), ("test", records[:1])]:
        _write_manifest(tmp_path / f"{split}.jsonl", rows)
    _write_manifest(tmp_path / "test_slow.jsonl", records[1:3])
    _write_manifest(tmp_path / "test_espeak.jsonl", records[3:])
    datamodule = SpeechDataModule(
        str(tmp_path),
        extra_test_manifests={"test_slow": "test_slow.jsonl", "test_espeak": "test_espeak.jsonl"},
    )
    assert datamodule.test_split_names == ["test", "test_slow", "test_espeak"]
    datamodule.set_tokenizer(train_tokenizer(datamodule.training_texts(), kind="char"))
    datamodule.setup("test")
    loaders = datamodule.test_dataloader()
    texts = [[text for batch in loader for text in batch["texts"]] for loader in loaders]
    assert texts == [["one two"], ["three", "four five six"], ["seven"]]
    with pytest.raises(ValueError, match="extra_test_manifests may not reuse the split names"):
        SpeechDataModule(str(tmp_path), extra_test_manifests={"train": "test_slow.jsonl"})


def test_speed_perturbation_changes_training_audio_length_only(tmp_path):
    from mmembed.data.speech import SpeechDataset, Utterance

    path = _write_wav(tmp_path / "a.wav", 1.0)
    tokenizer = train_tokenizer(["abc"], kind="char")
    plain = SpeechDataset([Utterance(path, "abc", 1.0)])
    faster = SpeechDataset([Utterance(path, "abc", 1.0)], speed_factors=[2.0])
    plain.tokenizer = faster.tokenizer = tokenizer
    assert len(plain[0]["waveform"]) == 16000
    assert len(faster[0]["waveform"]) == 8000
    assert faster[0]["tokens"].tolist() == plain[0]["tokens"].tolist()


def test_dataset_without_tokenizer_says_so(tmp_path):
    from mmembed.data.speech import SpeechDataset, Utterance

    dataset = SpeechDataset([Utterance(_write_wav(tmp_path / "a.wav", 0.2), "a", 0.2)])
    with pytest.raises(RuntimeError, match="needs a tokenizer"):
        dataset[0]


def test_bucket_sampler_resumes_mid_epoch_at_the_next_batch_of_its_shard(monkeypatch):
    durations = [0.5 + (i * 37 % 23) / 10 for i in range(60)]
    monkeypatch.setattr(sampling, "rank_and_world", lambda: (1, 2))
    sampler = DurationBucketBatchSampler(durations, max_batch_duration=6.0, bucket_size=16, seed=5)
    sampler.set_epoch(3)
    epoch = list(sampler)
    resumed = DurationBucketBatchSampler(durations, max_batch_duration=6.0, bucket_size=16, seed=5)
    resumed.resume(epoch=3, batches_done=2)
    assert list(resumed) == epoch[2:]
    assert len(resumed) == len(epoch), "Lightning counts the skipped batches of the epoch too"
    assert list(resumed) == epoch, "the skip applies to the resumed epoch only"
    resumed.resume(epoch=3, batches_done=2)
    resumed.set_epoch(4)
    assert len(list(resumed)) == len(resumed), "a new epoch starts from its first batch"


def test_a_manifest_that_is_not_utf8_fails_naming_file_and_line(tmp_path):
    good = json.dumps({"audio_filepath": "a.wav", "text": "ok", "duration": 1.0})
    bad = '{"audio_filepath": "b.wav", "text": "caf\u00e9", "duration": 1.0}'
    manifest = latin1_text(tmp_path / "m.jsonl", f"{good}\n{good}\n{bad}\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:3: not UTF-8 text \(byte 0xe9"):
        read_manifest(manifest)
