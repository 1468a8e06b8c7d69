"""Items that fail when they are loaded (their headers were fine): every data path turns them
into the same counted skip as at indexing, in any DataLoader worker, and the batch goes on
without them."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.bad_files import (
    corrupt_flac,
    grey16_png,
    nonfinite_wav,
    rgb_png,
    truncated_jpeg,
    write_jsonl,
    write_wav,
)
from mmembed.callbacks import LoadSkipsReport
from mmembed.data.coco import (
    CaptionedImage,
    CocoCaptionDataset,
    UnreadableImageError,
    collate_captions,
    load_coco_captions,
)
from mmembed.data.manifest import read_manifest
from mmembed.data.skips import LoadSkipWarning, SkippedItem
from mmembed.data.speech import (
    AudioLoadError,
    SpeechDataModule,
    SpeechDataset,
    index_utterances,
    load_audio,
)
from mmembed.text import train_tokenizer


def fake_trainer(stage="training", datamodule=None):
    flags = {flag: flag == stage for flag in ("training", "validating", "testing")}
    return SimpleNamespace(**flags, sanity_checking=False, datamodule=datamodule,
                           is_global_zero=True)  # fmt: skip


@pytest.fixture
def bad_audio(tmp_path):
    """A manifest of two good utterances and three whose headers pass indexing but whose
    samples are NaN, infinite, or do not decode."""
    write_wav(tmp_path / "good1.wav", 0.5)
    write_wav(tmp_path / "good2.wav", 0.5)
    nonfinite_wav(tmp_path / "nan.wav", float("nan"))
    nonfinite_wav(tmp_path / "inf.wav", float("-inf"))
    corrupt_flac(tmp_path / "corrupt.flac")
    names = ["good1.wav", "nan.wav", "inf.wav", "corrupt.flac", "good2.wav"]
    records = [{"audio_filepath": n, "text": "one two", "duration": 0.5} for n in names]
    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path / f"{split}.jsonl", records)
    return tmp_path


def test_non_finite_and_undecodable_audio_fail_at_load_naming_the_file(bad_audio):
    with pytest.raises(AudioLoadError, match=r"nan\.wav: audio holds non-finite samples \(1 NaN"):
        load_audio(bad_audio / "nan.wav", 16000)
    with pytest.raises(AudioLoadError, match=r"inf\.wav: .*0 NaN, 1 infinite") as caught:
        load_audio(bad_audio / "inf.wav", 16000)
    assert caught.value.kind == "non-finite audio"
    with pytest.raises(AudioLoadError, match=r"corrupt\.flac: cannot read audio") as caught:
        load_audio(bad_audio / "corrupt.flac", 16000)
    assert caught.value.kind == "unreadable audio"


def test_speech_dataset_returns_a_counted_skip_or_raises_with_strict(bad_audio):
    manifest = bad_audio / "train.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the headers are fine: indexing keeps all five
        utterances = index_utterances(read_manifest(manifest), manifest)
    dataset = SpeechDataset(utterances)
    dataset.tokenizer = train_tokenizer(["one two"])
    items = [dataset[i] for i in range(5)]
    kinds = [item.kind if isinstance(item, SkippedItem) else "ok" for item in items]
    assert kinds == ["ok", "non-finite audio", "non-finite audio", "unreadable audio", "ok"]
    assert items[1].where == f"{manifest}:2: {bad_audio / 'nan.wav'}"
    assert items[0]["path"] == str(bad_audio / "good1.wav")
    strict = SpeechDataset(utterances, strict=True)
    strict.tokenizer = dataset.tokenizer
    with pytest.raises(AudioLoadError, match=r"train\.jsonl:4: .*corrupt\.flac: cannot read"):
        strict[3]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_skips_found_in_workers_reach_the_data_module_once(bad_audio, num_workers):
    data = SpeechDataModule(str(bad_audio), max_batch_duration=10.0, num_workers=num_workers)
    data.set_tokenizer(train_tokenizer(data.training_texts()))
    data.trainer = fake_trainer("training")
    for _ in range(2):  # a bad file fails again every epoch; it is counted once
        batches = [data.on_before_batch_transfer(b, 0) for b in data.train_dataloader()]
    assert sum(len(batch["texts"]) for batch in batches) == 2
    assert all("skipped" not in batch for batch in batches)  # taken out before the transfer
    assert sorted(item.kind for item in data.skipped["train"]) == [
        "non-finite audio", "non-finite audio", "unreadable audio",
    ]  # fmt: skip
    data.trainer = fake_trainer("testing")
    for batch in data.test_dataloader():
        data.on_before_batch_transfer(batch, 0)
    assert len(data.skipped["test"]) == 3

    report = LoadSkipsReport()
    with pytest.warns(LoadSkipWarning) as caught:
        report.on_test_epoch_end(fake_trainer("testing", data), None)
    messages = "\n".join(str(w.message) for w in caught)
    assert "train (at load time): skipped 3 of 5 items" in messages
    assert "test (at load time): skipped 3 of 5 items" in messages
    for name in ("nan.wav", "inf.wav", "corrupt.flac"):
        assert name in messages
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once: the next epoch end is quiet
        report.on_train_epoch_end(fake_trainer("training", data), None)


def test_max_batch_size_must_be_a_positive_count(bad_audio):
    for size in (-1, 0, 1.5, True):
        with pytest.raises(ValueError, match=f"max_batch_size must be a positive.*{size!r}"):
            SpeechDataModule(str(bad_audio), max_batch_size=size)
    assert SpeechDataModule(str(bad_audio), max_batch_size=3).max_batch_size == 3


# --- images ------------------------------------------------------------------------------------


def test_truncated_jpeg_passes_the_header_check_then_is_skipped_at_load(tmp_path):
    rgb_png(tmp_path / "images" / "good.png")
    truncated_jpeg(tmp_path / "images" / "cut.jpg")
    records = [
        CaptionedImage(1, tmp_path / "images" / "good.png", ("a red square",)),
        CaptionedImage(2, tmp_path / "images" / "cut.jpg", ("noise",)),
    ]
    with Image.open(records[1].path) as image:
        image.verify()  # the header check at indexing cannot see it
    dataset = CocoCaptionDataset(records, mode="eval")
    failed = dataset[1]
    assert isinstance(failed, SkippedItem) and failed.kind == "unreadable image"
    assert failed.where == f"{records[1].path} (image id 2)" and "truncated" in failed.reason
    batch = collate_captions([dataset[0], failed])
    assert batch["image_ids"].tolist() == [1] and batch["skipped"] == [failed]
    assert batch["paths"] == [str(records[0].path)]
    assert collate_captions([failed]) == {"paths": [], "skipped": [failed]}
    with pytest.raises(UnreadableImageError, match=r"image id 2: cannot decode .*cut\.jpg"):
        CocoCaptionDataset(records, mode="eval", strict=True)[1]


def test_16_bit_greyscale_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    path = grey16_png(tmp_path / "deep.png", size=32)
    with Image.open(path) as image:
        assert image.mode == "I;16"
    record = CaptionedImage(1, path, ("a ramp",))
    image = CocoCaptionDataset([record], mode="eval")[0].image  # (3, H, W) in [0, 1]
    ramp = image[0, 0].numpy()
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])  # grey
    assert ramp[0] == 0.0 and ramp[-1] == 1.0
    assert np.all(np.diff(ramp) > 0)  # every column distinct, none clipped
    assert abs(ramp[16] - 16 / 31) < 1 / 255
    assert (ramp == 1.0).mean() < 0.05  # naive conversion: 31 of 32 columns white


def test_coco_loader_keeps_the_16_bit_image(tmp_path):
    grey16_png(tmp_path / "images" / "deep.png")
    (tmp_path / "c.json").write_text(
        '{"images": [{"id": 1, "file_name": "deep.png"}], '
        '"annotations": [{"image_id": 1, "caption": "grey"}]}'
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_coco_captions(tmp_path / "c.json", tmp_path / "images")) == 1
