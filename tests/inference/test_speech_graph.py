"""The speech encoder's ONNX-only forms: same outputs as the modules they stand in for."""

import onnx
import onnxruntime as ort
import pytest
import torch
import torchaudio
from torch import nn
from torch.export import Dim

from mmembed.export import export_program, onnx_bytes
from mmembed.inference.export.speech import DFTPowerSpectrogram, UnguardedSelfAttention
from mmembed.inference.speech import pad_waveforms
from mmembed.models.audio import SelfAttention


class _Attend(nn.Module):
    """Self-attention of (T, B, D) frames with keys past each utterance's length masked."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        padding = torch.arange(x.shape[0])[None, :] >= lengths[:, None]
        return self.attention(x, x, x, key_padding_mask=padding)[0]


def test_unguarded_attention_gives_self_attention_outputs_in_torch_and_onnx_runtime():
    reference = SelfAttention(nn.MultiheadAttention(32, 4)).eval()
    unguarded = UnguardedSelfAttention(reference).eval()
    x, lengths = torch.randn(7, 3, 32), torch.tensor([7, 5, 1])
    with torch.no_grad():
        expected = _Attend(reference)(x, lengths)
        torch.testing.assert_close(_Attend(unguarded)(x, lengths), expected, atol=1e-5, rtol=1e-5)
    program = export_program(
        _Attend(unguarded), (x, lengths), ({0: Dim("frames", min=2, max=64)}, None)
    )
    data = onnx_bytes(program, ["x", "lengths"], ["y"])
    # the point of this form: no NaN guard over the (B, heads, T, T) scores
    assert "IsNaN" not in {node.op_type for node in onnx.load_from_string(data).graph.node}
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    longer = torch.randn(11, 3, 32)
    for frames in (x, longer):
        with torch.no_grad():
            expected = _Attend(reference)(frames, lengths)
        (got,) = session.run(None, {"x": frames.numpy(), "lengths": lengths.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-5, rtol=1e-5)


class _Power(nn.Module):
    def __init__(self, spectrogram: nn.Module):
        super().__init__()
        self.spectrogram = spectrogram

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.spectrogram(waveforms)


def test_folded_dft_gives_the_power_spectrogram_in_torch_and_onnx_runtime():
    spectrogram = torchaudio.transforms.Spectrogram(
        n_fft=400, hop_length=160, power=2.0, pad_mode="constant"
    )
    folded = DFTPowerSpectrogram(spectrogram)
    generator = torch.Generator().manual_seed(0)

    def check(got, waveforms):
        expected = spectrogram(waveforms)
        assert got.shape == expected.shape
        assert float((got - expected).abs().max()) < 2e-6 * float(expected.abs().max())

    # whole hops of samples, as the ONNX graph takes them: 10 hops up to 10 s
    lengths = [1600, 1760, 16000, 160 * 1001]
    for samples in lengths:
        waveforms = torch.randn(2, samples, generator=generator)
        check(folded(waveforms), waveforms)
    hops = Dim("hops", min=10, max=60000)
    example = torch.randn(3, 11200, generator=generator)
    program = export_program(_Power(folded), (example,), ({0: Dim("batch"), 1: 160 * hops},))
    session = ort.InferenceSession(
        onnx_bytes(program, ["waveforms"], ["power"]), providers=["CPUExecutionProvider"]
    )
    for batch, samples in ((1, 1600), (4, 16160), (2, 160000)):
        waveforms = torch.randn(batch, samples, generator=generator)
        (got,) = session.run(None, {"waveforms": waveforms.numpy()})
        check(torch.from_numpy(got), waveforms)


def test_folded_dft_refuses_a_spectrogram_it_does_not_compute():
    for spectrogram in (
        torchaudio.transforms.Spectrogram(n_fft=400, hop_length=160),  # reflect padding
        torchaudio.transforms.Spectrogram(
            n_fft=400, hop_length=160, pad_mode="constant", window_fn=torch.hamming_window
        ),  # a window not zero at its first sample
        torchaudio.transforms.Spectrogram(n_fft=400, power=1.0, pad_mode="constant"),
    ):
        with pytest.raises(ValueError, match="no folded DFT form"):
            DFTPowerSpectrogram(spectrogram)


def test_waveforms_are_padded_to_whole_hops_for_the_onnx_graphs():
    waveforms = [torch.ones(1601), torch.ones(900)]
    batch, lengths = pad_waveforms(waveforms, min_samples=1600, multiple=160)
    assert batch.shape == (2, 1760) and lengths.tolist() == [1601, 900]
    assert float(batch[0].sum()) == 1601 and float(batch[1].sum()) == 900
    assert pad_waveforms(waveforms, min_samples=1600)[0].shape == (2, 1601)
