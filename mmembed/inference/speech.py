"""Speech recognition from an artifact: audio in, transcripts out.

The encoder graph takes waveforms (the log-mel front end is inside it) with a dynamic batch and
length; the host reads and resamples audio, pads batches of similar length and decodes: greedy
CTC, flashlight CTC beam search (with the packaged lexicon and LM), or, for joint models, the
attention beam search over the decoder-step graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np
import torch

from mmembed.data.audio_io import AudioLoadError, load_audio, to_model_waveform
from mmembed.inference.inputs import AUDIO_EXTENSIONS, InputError
from mmembed.inference.predictor import Predictor
from mmembed.models.decoding import SpeechDecoding
from mmembed.models.decoding.cached import empty_cache
from mmembed.models.decoding.speech import SpeechDecoder

Audio = str | PathLike | np.ndarray | torch.Tensor

# Rows of a batch per ONNX Runtime run of the encoder. ORT's per-clip cost grows with the batch
# once a run's activations leave the caches (8 x 10 s clips: ~28 ms a clip in one run of 8,
# 14-17% less CPU in four runs of 2; docs/benchmarks.md), while eager's falls. The rows of a
# batch are independent and keep its padded length, so the outputs are the same.
ONNX_ROWS_PER_RUN = 2


class SpeechPredictor(Predictor):
    """``transcribe(audio)``: see :meth:`transcribe`. Decoding settings come from the artifact
    (the run's ``task.decoding``)."""

    task = "speech_recognition"
    extensions = AUDIO_EXTENSIONS

    def __init__(self, artifact, **kwargs):
        super().__init__(artifact, **kwargs)
        self.audio = AudioInput.from_config(self.config["preprocessing"])
        decoding = dict(self.config["decoding"])
        if decoding["method"] == "ctc_beam":
            # flashlight reads the packaged lexicon and LM from files
            for key in ("lexicon", "lm"):
                if decoding[key]:
                    decoding[key] = str(self.resource(decoding[key]))
        self.decoding = SpeechDecoding(**decoding)
        attention = self.config["attention"]
        self._decoder = SpeechDecoder(
            self.tokenizer, self.decoding, attention["search"] if attention else None
        )

    # --- inputs ----------------------------------------------------------------------------

    def read(self, source: Audio, sample_rate: int | None = None) -> torch.Tensor:
        """A mono float waveform at the model's rate (see :func:`read_audio`)."""
        return self.audio.read(source, sample_rate)

    # --- predicting ------------------------------------------------------------------------

    def transcribe(
        self,
        audio: Audio | Sequence[Audio],
        sample_rate: int | None = None,
        batch_size: int = 8,
    ) -> list[str]:
        """Transcripts of audio files or arrays (one input or a list; always a list back).
        Arrays are at ``sample_rate`` (default: the model's) and resampled if it differs."""
        items = [audio] if _is_single(audio) else list(audio)
        waveforms = [self.read(item, sample_rate) for item in items]
        return [record["transcript"] for record in self.run(waveforms, batch_size=batch_size)]

    def run(
        self, items: Sequence[torch.Tensor], batch_size: int | None = None
    ) -> list[dict[str, Any]]:
        # similar lengths share a batch (less padding); results go back in input order
        order = sorted(range(len(items)), key=lambda i: items[i].numel())
        size = batch_size or len(items)
        results: list[dict[str, Any]] = [{} for _ in items]
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            for index, text in zip(
                chunk, self._transcribe_batch([items[i] for i in chunk]), strict=True
            ):
                results[index] = {"transcript": text}
        return results

    def _transcribe_batch(self, waveforms: list[torch.Tensor]) -> list[str]:
        batch, lengths = self.audio.batch(waveforms)
        # (CTC models only: a joint model's cross-attention caches are laid out layer-first)
        split = self.runtime.startswith("onnx") and not self.config["attention"]
        rows = ONNX_ROWS_PER_RUN if split else len(waveforms)
        runs = [
            self.graphs["encoder"](
                batch[start : start + rows].to(self.device),
                lengths[start : start + rows].to(self.device),
            )
            for start in range(0, len(waveforms), rows)
        ]
        log_probs, frame_lengths, *memory = (torch.cat(parts) for parts in zip(*runs, strict=True))
        return self.decode(log_probs, frame_lengths, *memory)

    def decode(
        self,
        log_probs: torch.Tensor,
        frame_lengths: torch.Tensor,
        memory_cache: torch.Tensor | None = None,
    ) -> list[str]:
        """Transcripts of the encoder graph's outputs, by the exported decoding settings
        (``memory_cache``: the joint model's third output, for ``method="attention"``)."""
        if self.decoding.method != "attention":
            return self._decoder(log_probs, frame_lengths)
        mask = torch.arange(log_probs.shape[1], device=self.device)[None] >= frame_lengths[:, None]
        step_graph = self.graphs["decoder_step"]
        layout = tuple(self.config["attention"]["cache_layout"])

        def step(tokens: torch.Tensor, cache: torch.Tensor, owners: torch.Tensor):
            return step_graph(tokens, cache, memory_cache, owners, mask)

        return self._decoder(
            log_probs,
            frame_lengths,
            step,
            lambda rows: empty_cache(layout, rows, self.device),
        )


@dataclasses.dataclass(frozen=True)
class AudioInput:
    """What an artifact's waveform graph accepts (its ``preprocessing`` config): the rate,
    the length limits, and the multiple of samples a batch is padded to (the ONNX graphs take
    whole hops)."""

    sample_rate: int
    min_samples: int
    max_samples: int
    sample_multiple: int = 1  # artifacts from before the whole-hop ONNX graphs have none

    @classmethod
    def from_config(cls, preprocessing: dict) -> AudioInput:
        fields = ("sample_rate", "min_samples", "max_samples", "sample_multiple")
        return cls(**{key: int(preprocessing[key]) for key in fields if key in preprocessing})

    def read(self, source: Audio, sample_rate: int | None = None) -> torch.Tensor:
        """See :func:`read_audio`."""
        return read_audio(source, self.sample_rate, self.max_samples, sample_rate)

    def batch(self, waveforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """See :func:`pad_waveforms`."""
        return pad_waveforms(waveforms, self.min_samples, self.sample_multiple)


def pad_waveforms(
    waveforms: Sequence[torch.Tensor], min_samples: int, multiple: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms as one zero-padded batch (B, max(longest, min_samples) rounded up to a
    ``multiple``) and their lengths. The padding is invisible to the exported graphs: their
    front end (and pooling) mask by length. (The ONNX graphs take whole hops of samples.)"""
    lengths = torch.tensor([w.numel() for w in waveforms], dtype=torch.long)
    samples = max(int(lengths.max()), min_samples)
    batch = torch.zeros(len(waveforms), -(-samples // multiple) * multiple)
    for row, waveform in enumerate(waveforms):
        batch[row, : waveform.numel()] = waveform
    return batch, lengths


def _is_single(audio: Any) -> bool:
    # an array is one clip: (frames,) or (frames, channels), as soundfile reads them
    return isinstance(audio, (str, PathLike, np.ndarray, torch.Tensor))


def read_audio(
    source: Audio, model_rate: int, max_samples: int, sample_rate: int | None = None
) -> torch.Tensor:
    """A mono float waveform at ``model_rate`` from a file (any rate and channel count) or an
    array ``(frames,)`` / ``(frames, channels)`` at ``sample_rate`` (default: the model's);
    :class:`~mmembed.inference.inputs.InputError` naming it if it is unreadable, empty, longer
    than ``max_samples`` (what the exported graph accepts) or not finite."""
    if isinstance(source, (str, PathLike)):
        try:
            waveform = load_audio(source, model_rate)
        except AudioLoadError as err:
            raise InputError(str(err)) from err
        name = str(source)
    else:
        try:
            waveform = to_model_waveform(source, sample_rate or model_rate, model_rate)
        except ValueError as err:
            raise InputError(f"audio array: {err}") from err
        name = "audio array"
    if waveform.numel() == 0:
        raise InputError(f"{name}: no audio samples")
    if waveform.numel() > max_samples:
        raise InputError(
            f"{name}: {waveform.numel() / model_rate:.1f} s is longer than the "
            f"{max_samples / model_rate:.0f} s the exported graph accepts; split it"
        )
    if not bool(torch.isfinite(waveform).all()):
        raise InputError(f"{name}: the audio holds NaN or infinite samples")
    return waveform
