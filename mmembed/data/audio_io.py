"""Reading audio for the models: any file soundfile reads (wav, flac, ogg, ...), at any rate and
channel count, as one mono float waveform at the model's rate. Training data and inference
read audio through these same functions."""

from __future__ import annotations

from os import PathLike

import numpy as np
import torch
import torchaudio

__all__ = ["AudioLoadError", "load_audio", "to_model_waveform"]


class AudioLoadError(RuntimeError):
    """An audio file that fails when it is loaded (the message names the file); ``kind`` is its
    skip category."""

    def __init__(self, message: str, kind: str = "unreadable audio"):
        super().__init__(message)
        self.kind = kind


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
    """Mono float waveform at ``sample_rate`` (channels averaged, resampled if needed).

    Raises :class:`AudioLoadError` naming the file if it does not decode, is empty, or holds NaN
    or infinite samples (float WAVs can; one such sample turns every loss it touches into NaN).
    """
    import soundfile  # only files need it (the GPU machines run arrays without it)

    try:
        samples, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for missing/corrupt files
        raise AudioLoadError(f"{path}: cannot read audio ({err})") from err
    if samples.shape[0] == 0:
        raise AudioLoadError(f"{path}: no audio samples", kind="empty audio")
    finite = np.isfinite(samples).all(axis=1)
    if not finite.all():
        nan = int(np.isnan(samples).any(axis=1).sum())
        raise AudioLoadError(
            f"{path}: audio holds non-finite samples ({nan} NaN, {int((~finite).sum()) - nan} "
            f"infinite of {len(finite)}, first at sample {int(np.flatnonzero(~finite)[0])})",
            kind="non-finite audio",
        )
    return to_model_waveform(samples, file_rate, sample_rate)
