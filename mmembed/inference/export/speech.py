"""What a speech recogniser exports: the encoder graph (waveforms in, the log-mel front end
inside, dynamic batch and length) and, for joint CTC/attention models, the decoder-step graph."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

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
    """torchaudio's power ``Spectrogram`` (centred, zero-padded, one-sided, with a window
    symmetric about its middle and zero at its first sample, as the periodic Hann window) as
    two products with the windowed DFT basis, for the ONNX graph. It takes whole hops of
    samples: the ONNX graph's input length is declared as a multiple of the hop, and the
    predictors pad to it (the encoder masks by length, so the padding changes no output).

    ONNX Runtime's ``STFT`` kernel takes 150-240 ms per 10 s of audio at ``n_fft=400`` on one
    CPU thread (most of the speech graph's time). Here the frames are cut from hop-sized
    blocks by slices, and each is folded about its middle before the products: under a
    symmetric window, samples ``n`` and ``N - n`` meet the same cosine and opposite sines, so
    the real part is ``(f[n] + f[N - n]) @ cos`` and the imaginary part
    ``(f[n] - f[N - n]) @ sin``, over half the samples. That is half the multiply-adds of the
    windowed DFT as one strided convolution (the form before this one: 5.2 of ONNX Runtime's
    ~26 ms per 10 s clip, against 3.5 ms now; docs/benchmarks.md). It matches ``torch.stft``
    to 6e-7 of the largest power. The torch program keeps ``torch.stft``.
    """

    def __init__(self, spectrogram: torchaudio.transforms.Spectrogram):
        super().__init__()
        n_fft, hop = spectrogram.n_fft, spectrogram.hop_length
        window = spectrogram.window.double()
        half = n_fft // 2
        supported = (
            spectrogram.power == 2.0 and spectrogram.center and spectrogram.onesided
            and not spectrogram.normalized and spectrogram.pad == 0
            and spectrogram.pad_mode == "constant" and spectrogram.win_length == n_fft
            and n_fft % 2 == 0 and window[0] == 0
            # symmetric up to float32 rounding (torch's Hann window is off by 3e-7)
            and torch.allclose(window[1:], window[1:].flip(0), rtol=0, atol=1e-6)
        )  # fmt: skip
        if not supported:
            raise ValueError(f"no folded DFT form for {spectrogram} (only the log-mel front end's)")
        # rows n = 1 .. N/2 (sample 0 is weighted 0); the middle sample is its own partner, so
        # its cosine row is halved (it is added to itself)
        samples = torch.arange(1, half + 1, dtype=torch.float64)[:, None]
        angles = 2 * torch.pi * samples * torch.arange(half + 1, dtype=torch.float64) / n_fft
        cos = angles.cos() * window[1 : half + 1, None]
        cos[-1] /= 2
        self.register_buffer("cos_basis", cos.float())
        self.register_buffer("sin_basis", (-angles.sin() * window[1 : half + 1, None]).float())
        self.n_fft, self.hop_length, self.half = n_fft, hop, half
        self.blocks_per_frame = -(-n_fft // hop)
        # centred: N/2 zeros on the left; on the right, enough for the last frame's blocks
        self.right_padding = hop * self.blocks_per_frame - half

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, S) with S a multiple of the hop -> power (B, bins, S / hop + 1), as
        ``Spectrogram(power=2)``."""
        batch = waveforms.shape[0]
        padded = F.pad(waveforms, (self.half, self.right_padding))
        blocks = padded.view(batch, -1, self.hop_length)
        frames = blocks.shape[1] - self.blocks_per_frame + 1
        framed = torch.cat(
            [blocks[:, j : j + frames] for j in range(self.blocks_per_frame)], dim=2
        )[:, :, : self.n_fft]
        head = framed[:, :, 1 : self.half + 1]  # f[n] for n = 1 .. N/2
        tail = framed[:, :, self.half :].flip(-1)  # f[N - n] for n = 1 .. N/2
        real = (head + tail) @ self.cos_basis
        imaginary = (head - tail) @ self.sin_basis
        return (real * real + imaginary * imaginary).transpose(1, 2)


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


@dataclasses.dataclass(frozen=True)
class WaveformInputs:
    """The waveform inputs of an encoder graph: their dynamic sizes and what a predictor needs
    to feed them (rate, length limits, and the multiple of samples it pads a batch to)."""

    sample_rate: int
    hop_length: int

    @classmethod
    def of(cls, melspec: torchaudio.transforms.MelSpectrogram) -> WaveformInputs:
        return cls(int(melspec.sample_rate), int(melspec.hop_length))

    @property
    def min_samples(self) -> int:
        return _round_up(int(MIN_SECONDS * self.sample_rate), self.hop_length)

    @property
    def max_samples(self) -> int:
        return int(MAX_SECONDS * self.sample_rate) // self.hop_length * self.hop_length

    def dynamic_shapes(self, whole_hops: bool = False) -> tuple[dict[int, Any], ...]:
        """``(waveforms, lengths)``'s; with ``whole_hops`` (the ONNX graph's folded DFT) the
        length is declared a multiple of the hop."""
        batch = Dim("batch", min=1, max=MAX_BATCH)
        if whole_hops:
            hops = Dim(
                "hops",
                min=self.min_samples // self.hop_length,
                max=self.max_samples // self.hop_length,
            )
            samples = self.hop_length * hops
        else:
            samples = Dim("samples", min=self.min_samples, max=self.max_samples)
        return ({0: batch, 1: samples}, {0: batch})

    def example(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """What the graph is traced at: 3 utterances of 0.7, 0.6 and 0.5 s."""
        return self._noise(generator, [7, 6, 5], scale=1.0)

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The self-test's inputs: 2 utterances of 1.0 and 0.6 s of noise."""
        return self._noise(generator, [10, 6], scale=0.1)

    def _noise(self, generator, tenths: list[int], scale: float):
        lengths = torch.tensor(tenths) * self.sample_rate // 10
        samples = _round_up(int(lengths.max()), self.hop_length)
        return scale * torch.randn(len(tenths), samples, generator=generator), lengths

    def preprocessing(self) -> dict[str, int]:
        return {
            "sample_rate": self.sample_rate,
            "min_samples": self.min_samples,
            "max_samples": self.max_samples,
            "sample_multiple": self.hop_length,
        }


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def use_onnx_forms(encoder: nn.Module) -> None:
    """Swap the speech encoder's spectrogram and self-attention, in place, for the forms ONNX
    Runtime runs faster (the same function): for a copy that only the ONNX graph exports."""
    melspec = encoder.frontend.melspec
    melspec.spectrogram = DFTPowerSpectrogram(melspec.spectrogram)
    for layer in encoder.conformer.conformer_layers:
        layer.self_attn = UnguardedSelfAttention(layer.self_attn)


def plan(trained: TrainedModel) -> ExportPlan:
    task = trained.task
    inputs = WaveformInputs.of(task.encoder.frontend.melspec)
    joint = task.decoder is not None
    generator = torch.Generator().manual_seed(0)
    onnx_task = copy.deepcopy(task)
    use_onnx_forms(onnx_task.encoder)
    encoder = GraphSpec(
        module=SpeechEncoderGraph(task, with_memory_cache=joint),
        onnx_module=SpeechEncoderGraph(onnx_task, with_memory_cache=joint),
        example=inputs.example(generator),
        dynamic_shapes=inputs.dynamic_shapes(),
        onnx_dynamic_shapes=inputs.dynamic_shapes(whole_hops=True),
        inputs=("waveforms", "lengths"),
        outputs=("log_probs", "frame_lengths", *(("memory_cache",) if joint else ())),
        sample=inputs.sample(generator),
    )
    graphs = {"encoder": encoder}
    config = {
        "tokenizer": task.tokenizer.to_dict(),
        "preprocessing": inputs.preprocessing(),
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
    # int8 weight products in the encoder; the front end's DFT basis and mel filterbank float
    int8 = {"encoder": ("frontend.",)}
    return ExportPlan("speech_recognition", graphs, config, files=files, int8_graphs=int8)
