"""Training-data augmentation: its shape and range contract, and that evaluation is untouched."""

import math

import pytest
import torch

from mmembed.data.audio_augment import AudioAugment
from mmembed.data.group_sampler import GroupCappedSampler
from mmembed.data.image_transforms import eval_transform, train_transform
from mmembed.data.video import VideoTransform

RATE = 16000


def tone(seconds=1.0, hz=440.0):
    t = torch.arange(int(seconds * RATE)) / RATE
    return 0.5 * torch.sin(2 * math.pi * hz * t)


def power(x):
    return x.pow(2).mean()


@pytest.mark.parametrize(
    "options",
    [dict(noise_p=1.0), dict(reverb_p=1.0), dict(gain_p=1.0), dict(band_limit_p=1.0)],
)
def test_each_audio_augmentation_keeps_length_and_range(options):
    audio = tone()
    out = AudioAugment(RATE, **options)(audio, torch.Generator().manual_seed(0))
    assert out.shape == audio.shape and out.dtype == audio.dtype
    assert out.abs().max() <= 1.0 and not torch.equal(out, audio)


def test_noise_lands_at_the_requested_snr():
    audio = tone()
    out = AudioAugment(RATE, noise_p=1.0, snr_db=(10.0, 10.0))(audio)
    snr = 10 * math.log10(power(audio) / power(out - audio))
    assert snr == pytest.approx(10.0, abs=0.5)


def test_band_limiting_removes_high_frequencies():
    high = tone(hz=7000.0)
    out = AudioAugment(RATE, band_limit_p=1.0, cutoff_hz=(3000.0, 3000.0))(high)
    assert power(out) < 0.1 * power(high)
    low = tone(hz=300.0)
    assert power(AudioAugment(RATE, band_limit_p=1.0)(low)) > 0.8 * power(low)


def test_reverberation_spreads_energy_past_a_click():
    click = torch.zeros(RATE)
    click[100] = 1.0
    out = AudioAugment(RATE, reverb_p=1.0, rt60_s=(0.5, 0.5))(click)
    assert out[100].abs() == pytest.approx(1.0) and out[2000:].abs().max() > 1e-3


def test_nothing_happens_without_probabilities_and_bad_settings_are_named():
    audio = tone()
    assert not AudioAugment(RATE).active
    assert torch.equal(AudioAugment(RATE)(audio), audio)
    with pytest.raises(ValueError, match="noise_p must be a probability"):
        AudioAugment(RATE, noise_p=2.0)
    with pytest.raises(ValueError, match="Nyquist"):
        AudioAugment(8000, cutoff_hz=(3000.0, 5000.0))


def test_speech_evaluation_audio_is_never_augmented(tmp_path):
    import json

    import soundfile

    from mmembed.data.speech import SpeechDataModule
    from mmembed.text import train_tokenizer

    soundfile.write(tmp_path / "a.wav", tone().numpy(), RATE, subtype="FLOAT")
    for split in ("train", "validation", "test"):
        entry = {"audio_filepath": "a.wav", "text": "a tone", "duration": 1.0}
        (tmp_path / f"{split}.jsonl").write_text(json.dumps(entry) + "\n")
    data = SpeechDataModule(tmp_path, augment={"noise_p": 1.0, "gain_p": 1.0})
    data.set_tokenizer(train_tokenizer(["a tone"], "char"))
    original = tone()
    assert not torch.allclose(data.dataset("train")[0]["waveform"], original, atol=1e-3)
    for split in ("validation", "test"):
        assert torch.allclose(data.dataset(split)[0]["waveform"], original, atol=1e-6)


def test_image_erasing_and_greyscale_apply_in_training_only():
    from PIL import Image

    image = Image.new("RGB", (32, 32), (200, 30, 30))
    augmented = train_transform(32, grayscale_p=1.0, erasing_p=1.0, brightness=0, contrast=0,
                                saturation=0)(image)  # fmt: skip
    assert augmented.shape == (3, 32, 32)
    plain = eval_transform(32)(image)
    assert (augmented == 0).all(dim=0).any()  # an erased patch
    assert not torch.allclose(plain[0], plain[1])  # colour survives evaluation


def test_video_jitter_is_the_same_for_every_frame_and_off_in_evaluation():
    frames = torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)
    frames[:] = frames[0]  # a still clip
    identity = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    train = VideoTransform(16, True, (1.0, 1.0), color_jitter=0.5, grayscale_p=1.0, **identity)
    clip = train(frames)  # (C, T, H, W)
    assert torch.allclose(clip[:, 0], clip[:, 3])  # one jitter for the whole clip
    assert torch.allclose(clip[0], clip[1], atol=1e-6)  # grey
    evaluation = VideoTransform(16, False, color_jitter=0.5, grayscale_p=1.0, erasing_p=1.0,
                                **identity)  # fmt: skip
    untouched = evaluation(frames)
    assert not torch.allclose(untouched[0], untouched[1])
    assert torch.allclose(untouched, frames.movedim(0, 1).float() / 255)


def test_group_cap_limits_each_group_per_epoch_and_varies_the_choice():
    groups = ["big"] * 20 + ["small"] * 2 + ["single"]
    sampler = GroupCappedSampler(groups, cap=3, seed=0)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        indices = list(sampler)
        assert len(indices) == len(sampler) == 3 + 2 + 1
        assert sum(groups[i] == "big" for i in indices) == 3
        assert {groups[i] for i in indices} == {"big", "small", "single"}
        epochs.append(sorted(i for i in indices if groups[i] == "big"))
    assert len({tuple(e) for e in epochs}) > 1
    with pytest.raises(ValueError, match="at least 1"):
        GroupCappedSampler(groups, cap=0)


def test_caption_items_of_one_caption_are_capped_per_epoch(tmp_path):
    import json

    from PIL import Image

    from mmembed.data.coco import CocoCaptionDataModule

    (tmp_path / "images").mkdir()
    images, annotations = [], []
    for index in range(6):  # five renderings of one emoji, one of another
        Image.new("RGB", (8, 8), (40 * index, 0, 0)).save(tmp_path / "images" / f"{index}.png")
        images.append({"id": index, "file_name": f"{index}.png"})
        caption = "a red heart" if index < 5 else "a blue star"
        annotations.append({"id": index, "image_id": index, "caption": caption})
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations})
        )
    data = CocoCaptionDataModule(tmp_path, batch_size=2, image_size=8, max_per_group=2)
    sampler = data.train_sampler(data.dataset("train"))
    indices = list(sampler)
    captions = [data.dataset("train").images[data.dataset("train").items[i][0]].references[0]
                for i in indices]  # fmt: skip
    assert sorted(captions) == ["a blue star", "a red heart", "a red heart"]
    with pytest.raises(ValueError, match="group_by must be one of"):
        CocoCaptionDataModule(tmp_path, group_by="colour")
