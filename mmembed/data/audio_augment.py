"""Waveform augmentation for recordings unlike the training corpus: additive noise at a random
SNR, simulated reverberation, random gain and telephone-style band-limiting, each applied with
its own probability and built on torchaudio functions. Training data only: evaluation always
sees the recordings as they are.

Noise and room responses are synthesised (no noise corpus is downloaded): coloured Gaussian
noise, and an exponentially decaying noise tail with a random RT60 as the room impulse
response (the classic statistical room model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchaudio.functional as AF


def _range(name: str, value: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {tuple(value)}")
    return low, high


@dataclass
class AudioAugment:
    """Random waveform augmentation; ``__call__(waveform (T,), generator) -> waveform (T,)``.

    Args:
        sample_rate: of the waveforms.
        noise_p, snr_db: probability of additive noise, and its SNR range in dB.
        reverb_p, rt60_s: probability of reverberation, and the RT60 range of the simulated
            room in seconds.
        gain_p, gain_db: probability of a random gain, and its range in dB.
        band_limit_p, cutoff_hz: probability of a telephone-style low-pass, and its cutoff
            range in Hz (3.4 kHz is a narrowband telephone line).
    """

    sample_rate: int = 16000
    noise_p: float = 0.0
    snr_db: Sequence[float] = (5.0, 30.0)
    reverb_p: float = 0.0
    rt60_s: Sequence[float] = (0.2, 0.8)
    gain_p: float = 0.0
    gain_db: Sequence[float] = (-12.0, 6.0)
    band_limit_p: float = 0.0
    cutoff_hz: Sequence[float] = (3000.0, 4000.0)

    def __post_init__(self) -> None:
        for name in ("noise_p", "reverb_p", "gain_p", "band_limit_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        self.snr_db = _range("snr_db", self.snr_db)
        self.rt60_s = _range("rt60_s", self.rt60_s)
        self.gain_db = _range("gain_db", self.gain_db)
        self.cutoff_hz = _range("cutoff_hz", self.cutoff_hz)
        if self.cutoff_hz[1] >= self.sample_rate / 2:
            raise ValueError(f"cutoff_hz must stay below the Nyquist rate {self.sample_rate / 2}")

    @property
    def active(self) -> bool:
        return any(p > 0 for p in (self.noise_p, self.reverb_p, self.gain_p, self.band_limit_p))

    def __call__(self, waveform: torch.Tensor, generator: torch.Generator | None = None):
        def chance(p: float) -> bool:
            return p > 0 and torch.rand((), generator=generator).item() < p

        def uniform(bounds: tuple[float, float]) -> float:
            low, high = bounds
            return low + (high - low) * torch.rand((), generator=generator).item()

        if waveform.numel() == 0:
            return waveform
        if chance(self.reverb_p):
            waveform = self.reverberate(waveform, uniform(self.rt60_s), generator)
        if chance(self.band_limit_p):
            waveform = AF.lowpass_biquad(waveform, self.sample_rate, uniform(self.cutoff_hz))
        if chance(self.noise_p):
            noise = torch.randn(waveform.shape, generator=generator, dtype=waveform.dtype)
            snr = torch.tensor([uniform(self.snr_db)], dtype=waveform.dtype)
            waveform = AF.add_noise(waveform[None], noise[None], snr)[0]
        if chance(self.gain_p):
            waveform = waveform * 10.0 ** (uniform(self.gain_db) / 20.0)
        return waveform.clamp(-1.0, 1.0)

    def reverberate(
        self, waveform: torch.Tensor, rt60: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Convolve with a synthetic room response (direct path + exponentially decaying
        noise tail reaching -60 dB at ``rt60``), keeping the length and the peak level."""
        length = max(1, int(rt60 * self.sample_rate))
        t = torch.arange(length, dtype=waveform.dtype) / self.sample_rate
        tail = torch.randn(length, generator=generator, dtype=waveform.dtype)
        response = tail * torch.exp(-6.9 * t / rt60) * 0.3  # ln(1000) = 6.9: -60 dB at rt60
        response[0] = 1.0
        wet = AF.fftconvolve(waveform, response)[: waveform.shape[-1]]
        peak = waveform.abs().max().clamp_min(1e-8)
        return wet * (peak / wet.abs().max().clamp_min(1e-8))

