"""Reading audio for the models: any file soundfile reads (wav, flac, ogg, ...), at any rate and
channel count, as one mono float waveform at the model's rate. Training data and inference
read audio through these same functions."""

from __future__ import annotations

from os import PathLike

import numpy as np
import torch
import torchaudio

__all__ = ["AudioReadError", "load_audio", "to_model_waveform"]


class AudioReadError(RuntimeError):
    """An audio file that cannot be read; the message names the file."""


def to_model_waveform(
    samples: np.ndarray | torch.Tensor, rate: int, sample_rate: int
) -> torch.Tensor:
    """Mono float32 waveform at ``sample_rate`` from ``samples`` (frames,) or (frames, channels)
    at ``rate``: channels averaged, resampled if needed."""
    waveform = torch.as_tensor(samples, dtype=torch.float32)
    if waveform.dim() == 2:
        waveform = waveform.mean(dim=1)
    elif waveform.dim() != 1:
        raise ValueError(
            f"audio must be (frames,) or (frames, channels), got {tuple(waveform.shape)}"
        )
    if rate != sample_rate:
        waveform = torchaudio.functional.resample(waveform, rate, sample_rate)
    return waveform


def load_audio(path: str | PathLike, sample_rate: int) -> torch.Tensor:
    """Mono float waveform at ``sample_rate`` (channels averaged, resampled if needed)."""
    import soundfile  # only files need it (the GPU machines run arrays without it)

    try:
        samples, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for missing/corrupt files
        raise AudioReadError(f"{path}: cannot read audio ({err})") from err
    if samples.shape[0] == 0:
        raise AudioReadError(f"{path}: no audio samples")
    return to_model_waveform(samples, file_rate, sample_rate)
