"""Audio encoder: log-mel front end -> SpecAugment -> 4x conv subsampling -> Conformer -> width.

Waveforms go in (not features), so an exported model carries its own front end and a deployed
model cannot be fed features computed with different settings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn


class LogMelFrontend(nn.Module):
    """Log-mel filterbank features, normalised per utterance over its real (unpadded) frames.

    The STFT pads each end with zeros (not torch's default reflection), and samples past an
    utterance's length are zeroed first, so an utterance's features are the same alone or
    padded in any batch: a reflection at its end would differ from the zeros of a padded batch
    in the edge frames, and through the utterance statistics and attention, in every frame.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = None,
    ):
        super().__init__()
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            center=True,
            pad_mode="constant",
        )

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        samples = torch.arange(waveforms.shape[-1], device=waveforms.device)
        waveforms = waveforms * (samples < lengths[:, None]).to(waveforms.dtype)
        features = (self.melspec(waveforms) + 1e-6).log().transpose(1, 2)  # (B, T, n_mels)
        frame_lengths = torch.div(lengths, self.hop_length, rounding_mode="floor") + 1
        valid = torch.arange(features.shape[1], device=features.device) < frame_lengths[:, None]
        valid = valid.unsqueeze(-1).to(features.dtype)
        count = (valid.sum(dim=1, keepdim=True) * self.n_mels).clamp_min(1)
        mean = (features * valid).sum(dim=(1, 2), keepdim=True) / count
        var = (((features - mean) * valid) ** 2).sum(dim=(1, 2), keepdim=True) / count
        return (features - mean) / (var + 1e-5).sqrt() * valid, frame_lengths


class SpecAugment(nn.Module):
    """Frequency and time masking (torchaudio), active only in training mode."""

    def __init__(
        self,
        freq_mask_param: int = 15,
        time_mask_param: int = 25,
        num_freq_masks: int = 2,
        num_time_masks: int = 2,
    ):
        super().__init__()
        self.freq_masks = nn.ModuleList(
            torchaudio.transforms.FrequencyMasking(freq_mask_param, iid_masks=True)
            for _ in range(num_freq_masks)
        )
        self.time_masks = nn.ModuleList(
            torchaudio.transforms.TimeMasking(time_mask_param, iid_masks=True)
            for _ in range(num_time_masks)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return features
        spec = features.transpose(1, 2).unsqueeze(1)  # torchaudio masks want (B, C, F, T)
        for mask in (*self.freq_masks, *self.time_masks):
            spec = mask(spec)
        return spec.squeeze(1).transpose(1, 2)


def _halved(lengths: torch.Tensor) -> torch.Tensor:
    """Frames after a stride-2, kernel-3, padding-1 convolution."""
    return torch.div(lengths - 1, 2, rounding_mode="floor") + 1


def _frame_mask(lengths: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, size) 1 on real frames, 0 on padding."""
    return (torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]).to(dtype)


class ConvSubsampling(nn.Module):
    """Two stride-2 2-D convolutions over (time, mel): 4x fewer frames, the usual Conformer
    input stage. Padded frames are zeroed between the convolutions, so a padded utterance
    gives the frames it gives alone."""

    def __init__(self, in_features: int, channels: int, out_dim: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        reduced = (in_features + 1) // 2
        reduced = (reduced + 1) // 2
        self.out = nn.Linear(channels * reduced, out_dim)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return _halved(_halved(lengths))

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv[1](self.conv[0](features.unsqueeze(1)))  # (B, C, T/2, F/2)
        half = _halved(lengths)
        x = x * _frame_mask(half, x.shape[2], x.dtype)[:, None, :, None]
        x = self.conv[3](self.conv[2](x))  # (B, C, T/4, F/4)
        x = x.permute(0, 2, 1, 3).flatten(2)
        return self.out(x), _halved(half)


class Conv1dSubsampling(nn.Module):
    """Two stride-2 1-D convolutions with the mel bins as channels: 4x fewer frames at a
    fraction of the 2-D stage's cost (about 8x fewer multiply-adds at 64 mels), which is what
    makes CPU training budgets work. Padded frames are zeroed between the convolutions."""

    def __init__(self, in_features: int, channels: int, out_dim: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(in_features, channels, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv1d(channels, out_dim, 3, stride=2, padding=1),
            nn.SiLU(),
        )

    output_lengths = staticmethod(ConvSubsampling.output_lengths)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv[1](self.conv[0](features.transpose(1, 2)))  # (B, C, T/2)
        half = _halved(lengths)
        x = x * _frame_mask(half, x.shape[2], x.dtype)[:, None, :]
        x = self.conv[3](self.conv[2](x))
        return x.transpose(1, 2), _halved(half)


def conformer_layer(
    layer: torchaudio.models.conformer.ConformerLayer,
    x: torch.Tensor,
    padding: torch.Tensor,
    keep: torch.Tensor,
) -> torch.Tensor:
    """torchaudio's ``ConformerLayer.forward`` (same submodules, same order) with padded frames
    zeroed before the depthwise convolution, as ESPnet does: otherwise its kernel reads the
    padding next to an utterance's last frames. ``x`` (T, B, D); ``padding`` (B, T) True at
    padding; ``keep`` (B, T) its float complement."""

    def convolution(x: torch.Tensor) -> torch.Tensor:
        module = layer.conv_module
        y = module.layer_norm(x.transpose(0, 1)).transpose(1, 2)  # (B, D, T)
        pointwise, glu, *rest = module.sequential
        y = glu(pointwise(y)) * keep[:, None, :]
        for stage in rest:
            y = stage(y)
        return x + y.permute(2, 0, 1)

    x = layer.ffn1(x) * 0.5 + x
    if layer.convolution_first:
        x = convolution(x)
    residual = x
    attended = layer.self_attn_layer_norm(x)
    attended, _ = layer.self_attn(attended, attended, attended, key_padding_mask=padding)
    x = layer.self_attn_dropout(attended) + residual
    if not layer.convolution_first:
        x = convolution(x)
    x = layer.ffn2(x) * 0.5 + x
    return layer.final_layer_norm(x)


class SelfAttention(nn.Module):
    """Drop-in for the ``nn.MultiheadAttention`` inside torchaudio's Conformer layers, on
    ``scaled_dot_product_attention``.

    ``nn.MultiheadAttention`` reshapes to (T, B * heads, head_dim), which makes ``torch.export``
    emit a shape guard it cannot prove for a dynamic number of frames; this layout does not.
    Parameter names match ``nn.MultiheadAttention`` so checkpoints load either way.
    """

    def __init__(self, attention: nn.MultiheadAttention):
        super().__init__()
        if not attention._qkv_same_embed_dim or attention.batch_first:
            raise ValueError("expected a self-attention nn.MultiheadAttention in (T, B, D) layout")
        self.num_heads = attention.num_heads
        self.dropout = attention.dropout
        self.in_proj_weight = attention.in_proj_weight
        self.in_proj_bias = attention.in_proj_bias
        self.out_proj = attention.out_proj

    def forward(self, query, key, value, key_padding_mask=None, need_weights=False):
        length, batch, width = query.shape
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(length, batch, 3, self.num_heads, -1).permute(2, 1, 3, 0, 4).unbind(0)
        attend = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.permute(2, 0, 1, 3).reshape(length, batch, width)), None


class AudioEncoder(nn.Module):
    """Composes the stages; returns frame embeddings in the shared width and their lengths."""

    def __init__(
        self,
        frontend: LogMelFrontend,
        spec_augment: SpecAugment | None,
        subsampling: nn.Module,
        conformer: torchaudio.models.Conformer,
        output: nn.Module,
    ):
        super().__init__()
        self.frontend = frontend
        self.spec_augment = spec_augment
        self.subsampling = subsampling
        self.conformer = conformer
        self.output = output

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, frame_lengths = self.frontend(waveforms, lengths)
        if self.spec_augment is not None:
            features = self.spec_augment(features)
        x, frame_lengths = self.subsampling(features, frame_lengths)
        frame_lengths = frame_lengths.clamp(max=x.shape[1])
        # torchaudio's Conformer.forward sizes its padding mask with lengths.max().item(), a
        # data-dependent value torch.export cannot trace; the mask from the padded shape is the
        # same and exports (and conformer_layer also masks the convolutions with it).
        keep = _frame_mask(frame_lengths, x.shape[1], x.dtype)
        padding = keep == 0
        x = x.transpose(0, 1).contiguous()
        for layer in self.conformer.conformer_layers:
            x = conformer_layer(layer, x, padding, keep)
        return self.output(x.transpose(0, 1)), frame_lengths


def build_audio_encoder(
    out_dim: int,
    sample_rate: int = 16000,
    n_mels: int = 80,
    n_fft: int = 400,
    hop_length: int = 160,
    subsampling: str = "conv2d",
    subsampling_channels: int = 64,
    d_model: int = 144,
    num_layers: int = 4,
    num_heads: int = 4,
    ffn_dim: int = 576,
    conv_kernel_size: int = 15,
    dropout: float = 0.1,
    spec_augment: bool = True,
    freq_mask_param: int = 15,
    time_mask_param: int = 25,
    num_freq_masks: int = 2,
    num_time_masks: int = 2,
) -> AudioEncoder:
    """Conformer-style speech encoder.

    Args:
        out_dim: width of the returned frame embeddings (the shared model width).
        sample_rate, n_mels, n_fft, hop_length: log-mel front end (10 ms hop at 16 kHz default).
        subsampling: ``"conv2d"`` (two stride-2 2-D convolutions over time x mel, the standard
            Conformer stage) or ``"conv1d"`` (mel bins as channels; much cheaper on CPU).
            Either way 4x fewer frames.
        subsampling_channels: channels of the two stride-2 convolutions.
        d_model, num_layers, num_heads, ffn_dim, conv_kernel_size, dropout: the Conformer
            (torchaudio's ``Conformer``; ``conv_kernel_size`` is its depthwise kernel, odd).
        spec_augment: apply SpecAugment in training; ``*_mask_param`` are the maximum mask widths
            in mel bins / frames, ``num_*_masks`` how many masks of each kind.
    """
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
    subsamplers = {"conv2d": ConvSubsampling, "conv1d": Conv1dSubsampling}
    if subsampling not in subsamplers:
        raise ValueError(f"subsampling must be one of {sorted(subsamplers)}, got {subsampling!r}")
    if conv_kernel_size % 2 == 0:
        raise ValueError(f"conv_kernel_size must be odd, got {conv_kernel_size}")
    augment = (
        SpecAugment(freq_mask_param, time_mask_param, num_freq_masks, num_time_masks)
        if spec_augment
        else None
    )
    conformer = torchaudio.models.Conformer(
        input_dim=d_model,
        num_heads=num_heads,
        ffn_dim=ffn_dim,
        num_layers=num_layers,
        depthwise_conv_kernel_size=conv_kernel_size,
        dropout=dropout,
    )
    for layer in conformer.conformer_layers:
        layer.self_attn = SelfAttention(layer.self_attn)
    output = nn.Sequential(nn.Linear(d_model, out_dim), nn.LayerNorm(out_dim))
    return AudioEncoder(
        frontend=LogMelFrontend(sample_rate, n_fft, hop_length, n_mels),
        spec_augment=augment,
        subsampling=subsamplers[subsampling](n_mels, subsampling_channels, d_model),
        conformer=conformer,
        output=output,
    )
