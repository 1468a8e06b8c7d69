"""Audio encoder stages, and that the speech model exports with dynamic batch and length."""

import functools

import pytest
import torch
from torch import nn

from mmembed import SharedEmbedding
from mmembed.models.audio import (
    SelfAttention,
    SpecAugment,
    build_audio_encoder,
    conformer_layer,
)
from mmembed.models.decoding import ctc_greedy
from mmembed.tasks.speech_recognition import SpeechRecognition
from mmembed.text import train_tokenizer

SMALL = dict(d_model=32, num_layers=1, num_heads=4, ffn_dim=64, n_mels=40,
             subsampling_channels=8)  # fmt: skip


def small_task():
    torch.manual_seed(0)
    tokenizer = train_tokenizer(["hello world"], "char")
    encoder = build_audio_encoder(out_dim=32, **SMALL)
    return SpeechRecognition(
        encoder,
        tokenizer=tokenizer,
        embedding=functools.partial(SharedEmbedding, embedding_dim=16),
        width=32,
    ).eval()


@pytest.mark.parametrize("subsampling", ["conv2d", "conv1d"])
def test_encoder_output_width_and_lengths_follow_the_4x_subsampling(subsampling):
    encoder = build_audio_encoder(out_dim=24, **SMALL, subsampling=subsampling).eval()
    waveforms = torch.randn(2, 16000)
    frames, lengths = encoder(waveforms, torch.tensor([16000, 8000]))
    assert frames.shape == (2, 26, 24)  # 101 feature frames -> 51 -> 26
    assert lengths.tolist() == [26, 13]


@pytest.mark.parametrize("subsampling", ["conv2d", "conv1d"])
def test_an_utterance_gives_the_same_frames_alone_and_padded_in_a_batch(subsampling):
    settings = {**SMALL, "num_layers": 2, "conv_kernel_size": 3, "subsampling": subsampling}
    encoder = build_audio_encoder(out_dim=24, **settings).eval()
    audio = torch.randn(1, 8000)
    alone, _ = encoder(audio, torch.tensor([8000]))
    # whatever sits past the utterance's end (here noise, not zeros) must not reach its frames
    padded = torch.cat([torch.cat([audio, torch.randn(1, 8000)], dim=1), torch.randn(1, 16000)])
    batched, lengths = encoder(padded, torch.tensor([8000, 16000]))
    ignoring_lengths, _ = encoder(padded, torch.tensor([16000, 16000]))
    assert lengths[0] == alone.shape[1]
    torch.testing.assert_close(batched[0, : lengths[0]], alone[0], atol=1e-5, rtol=1e-5)
    # the comparison can fail: without the lengths the padding does change the frames
    assert (ignoring_lengths[0, : lengths[0]] - alone[0]).abs().max() > 0.05


def test_masked_conformer_layer_is_torchaudios_layer_on_unpadded_input():
    encoder = build_audio_encoder(out_dim=24, **SMALL).eval()
    layer = encoder.conformer.conformer_layers[0]
    frames = torch.randn(13, 2, SMALL["d_model"])
    no_padding = torch.zeros(2, 13, dtype=torch.bool)
    expected = layer(frames, no_padding)
    got = conformer_layer(layer, frames, no_padding, (~no_padding).float())
    torch.testing.assert_close(got, expected)


def test_spec_augment_masks_only_in_training():
    augment = SpecAugment(freq_mask_param=10, time_mask_param=10)
    features = torch.ones(2, 50, 40)
    assert torch.equal(augment.eval()(features), features)
    torch.manual_seed(0)
    masked = augment.train()(features)
    assert (masked == 0).any() and masked.shape == features.shape


def test_self_attention_matches_multihead_attention():
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(32, 4).eval()
    ours = SelfAttention(reference).eval()
    x = torch.randn(7, 3, 32)
    padding = torch.tensor([[False] * 7, [False] * 5 + [True] * 2, [False] * 3 + [True] * 4])
    expected, _ = reference(x, x, x, key_padding_mask=padding, need_weights=False)
    got, _ = ours(x, x, x, key_padding_mask=padding)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert set(ours.state_dict()) == set(reference.state_dict())


def test_invalid_encoder_settings_are_named():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        build_audio_encoder(out_dim=8, d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="subsampling must be one of"):
        build_audio_encoder(out_dim=8, subsampling="conv3d")
    with pytest.raises(ValueError, match="conv_kernel_size must be odd"):
        build_audio_encoder(out_dim=8, conv_kernel_size=4)


def test_speech_model_exports_with_dynamic_batch_and_length():
    task = small_task()
    waveforms, lengths = torch.randn(2, 16000), torch.tensor([16000, 12000])
    batch = torch.export.Dim("batch", min=1, max=64)
    samples = torch.export.Dim("samples", min=1600, max=16000 * 60)
    program = torch.export.export(
        task, (waveforms, lengths), dynamic_shapes=({0: batch, 1: samples}, {0: batch})
    )
    other = torch.randn(3, 20000), torch.tensor([20000, 18000, 5000])
    for args in ((waveforms, lengths), other):
        expected = task(*args)
        got = program.module()(*args)
        torch.testing.assert_close(got[0], expected[0])
        assert torch.equal(got[1], expected[1])


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    path = torch.tensor([[0, 5, 5, 0, 5, 6, 6, 0, 7, 7]])
    log_probs = torch.nn.functional.one_hot(path, 8).float().log()
    assert ctc_greedy(log_probs, torch.tensor([10]), blank_id=0) == [[5, 5, 6, 7]]
    assert ctc_greedy(log_probs, torch.tensor([4]), blank_id=0) == [[5]]
