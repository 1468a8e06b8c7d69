"""What a speech recogniser exports: the encoder graph (waveforms in, the log-mel front end
inside, dynamic batch and length) and, for joint CTC/attention models, the decoder-step graph."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from torch.export import Dim

from mmembed.inference.export.builder import ExportPlan, GraphSpec
from mmembed.inference.export.decoder import decoder_step_graph
from mmembed.inference.export.rebuild import ExportError, TrainedModel

# the exported graph's accepted audio lengths, in seconds (longer inputs are refused by name)
MIN_SECONDS, MAX_SECONDS = 0.1, 600.0
MAX_BATCH = 1024


class SpeechEncoderGraph(nn.Module):
    """``(waveforms (B, S), lengths (B,)) -> (log_probs (B, T, V), frame_lengths (B,))``, plus
    the decoder's cross-attention cache of the frames for joint models."""

    def __init__(self, task, with_memory_cache: bool):
        super().__init__()
        self.task = task
        self.with_memory_cache = with_memory_cache

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        frames, frame_lengths, log_probs = self.task.encode(waveforms, lengths)
        if not self.with_memory_cache:
            return log_probs, frame_lengths
        return log_probs, frame_lengths, self.task.decoder.memory_cache(frames)


class DFTPowerSpectrogram(nn.Module):
    """torchaudio's power ``Spectrogram`` (centred, zero-padded, one-sided) as one strided
    convolution with the windowed DFT basis, for the ONNX graph.

    ONNX Runtime's ``STFT`` kernel takes 150-240 ms per 10 s of audio at ``n_fft=400`` on one
    CPU thread (it is most of the speech graph's time); this takes 16 ms there, and matches
    ``torch.stft`` to 1.2e-6 of the largest power. The torch program keeps ``torch.stft``
    (8 ms).
    """

    def __init__(self, spectrogram: torchaudio.transforms.Spectrogram):
        super().__init__()
        n_fft = spectrogram.n_fft
        supported = (
            spectrogram.power == 2.0 and spectrogram.center and spectrogram.onesided
            and not spectrogram.normalized and spectrogram.pad == 0
            and spectrogram.pad_mode == "constant" and spectrogram.win_length == n_fft
        )  # fmt: skip
        if not supported:
            raise ValueError(f"no DFT form for {spectrogram} (only the log-mel front end's)")
        bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angles = 2 * torch.pi * bins * torch.arange(n_fft, dtype=torch.float64)[None] / n_fft
        basis = torch.cat([angles.cos(), -angles.sin()]) * spectrogram.window.double()
        self.register_buffer("basis", basis.float()[:, None, :])
        self.hop_length = spectrogram.hop_length
        self.num_bins = n_fft // 2 + 1

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, S) -> power (B, bins, frames), as ``Spectrogram(power=2)``."""
        half = (self.basis.shape[-1]) // 2
        framed = F.conv1d(
            F.pad(waveforms[:, None], (half, half)), self.basis, stride=self.hop_length
        )
        real, imaginary = framed[:, : self.num_bins], framed[:, self.num_bins :]
        return real * real + imaginary * imaginary


class UnguardedSelfAttention(nn.Module):
    """:class:`~mmembed.models.audio.SelfAttention` (same parameters) with the softmax written
    out, for the ONNX graph.

    The exporter writes ``scaled_dot_product_attention`` with a boolean mask as softmax
    followed by ``IsNaN`` + ``Where`` over the whole (B, heads, T, T) score tensor, zeroing the
    rows whose keys are all masked: 8-10% of ONNX Runtime's time on the speech graph (this form
    is 1.1-1.2x faster there). No row is all masked here: every utterance keeps at least one
    frame (``lengths // hop + 1``, and each stride-2 stage keeps at least one), so the guard
    never changes a value. Inference only (no dropout).
    """

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention

    def forward(self, query, key, value, key_padding_mask=None, need_weights=False):
        attention = self.attention
        length, batch, width = query.shape
        qkv = F.linear(query, attention.in_proj_weight, attention.in_proj_bias)
        q, k, v = qkv.view(length, batch, 3, attention.num_heads, -1).permute(2, 1, 3, 0, 4)
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (B, heads, T, T)
        if key_padding_mask is not None:
            bias = torch.zeros(key_padding_mask.shape, dtype=scores.dtype, device=scores.device)
            scores = scores + bias.masked_fill(key_padding_mask, float("-inf"))[:, None, None]
        out = scores.softmax(dim=-1) @ v
        return attention.out_proj(out.permute(2, 0, 1, 3).reshape(length, batch, width)), None


def use_onnx_forms(encoder: nn.Module) -> None:
    """Swap the speech encoder's spectrogram and self-attention, in place, for the forms ONNX
    Runtime runs faster (the same function): for a copy that only the ONNX graph exports."""
    melspec = encoder.frontend.melspec
    melspec.spectrogram = DFTPowerSpectrogram(melspec.spectrogram)
    for layer in encoder.conformer.conformer_layers:
        layer.self_attn = UnguardedSelfAttention(layer.self_attn)


def plan(trained: TrainedModel) -> ExportPlan:
    task = trained.task
    sample_rate = int(task.encoder.frontend.melspec.sample_rate)
    min_samples, max_samples = int(MIN_SECONDS * sample_rate), int(MAX_SECONDS * sample_rate)
    joint = task.decoder is not None
    batch = Dim("batch", min=1, max=MAX_BATCH)
    samples = Dim("samples", min=min_samples, max=max_samples)
    generator = torch.Generator().manual_seed(0)
    # traced at 3 x 0.7 s; checked on 2 utterances of 1.0 and 0.6 s of noise
    example_lengths = torch.tensor([7, 6, 5]) * sample_rate // 10
    sample_lengths = torch.tensor([10, 6]) * sample_rate // 10
    onnx_task = copy.deepcopy(task)
    use_onnx_forms(onnx_task.encoder)
    encoder = GraphSpec(
        module=SpeechEncoderGraph(task, with_memory_cache=joint),
        onnx_module=SpeechEncoderGraph(onnx_task, with_memory_cache=joint),
        example=(torch.randn(3, int(example_lengths[0]), generator=generator), example_lengths),
        dynamic_shapes=({0: batch, 1: samples}, {0: batch}),
        inputs=("waveforms", "lengths"),
        outputs=("log_probs", "frame_lengths", *(("memory_cache",) if joint else ())),
        sample=(0.1 * torch.randn(2, int(sample_lengths[0]), generator=generator), sample_lengths),
    )
    graphs = {"encoder": encoder}
    config = {
        "tokenizer": task.tokenizer.to_dict(),
        "preprocessing": {
            "sample_rate": sample_rate,
            "min_samples": min_samples,
            "max_samples": max_samples,
        },
        "decoding": dataclasses.asdict(task.decoding),
        "attention": None,
    }
    files = {}
    for key in ("lexicon", "lm"):
        path = getattr(task.decoding, key)
        if path:
            if not Path(path).is_file():
                raise ExportError(
                    f"decoding.{key} {path}: no such file (it is packaged with the model)"
                )
            member = f"files/{key}{Path(path).suffix}"
            files[member] = Path(path).read_bytes()
            config["decoding"][key] = member
    if joint:
        graphs["decoder_step"] = decoder_step_graph(task.decoder, memory_padding=True)
        config["attention"] = {
            "search": task.attention_search_options(),
            "cache_layout": list(task.decoder.cache_layout),
        }
    return ExportPlan("speech_recognition", graphs, config, files=files)
