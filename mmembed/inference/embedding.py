"""Multimodal embeddings from an artifact: audio, images, videos and texts in, unit vectors of
one shared space out.

Each modality has its own graph (the model's ``embedder(modality)``): waveforms with the
log-mel front end inside, images resized and normalised as the caption data's evaluation,
videos as the run's evaluation clips (averaged inside the graph), texts as token ids and a mask.
The host reads each input as the single tasks' predictors do, batches inputs of one modality
together and returns the vectors in input order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmembed.data.image_transforms import eval_transform
from mmembed.data.video_clips import ClipSampling
from mmembed.data.video_transforms import VideoTransform
from mmembed.inference.captioning import read_image
from mmembed.inference.inputs import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    InputError,
)
from mmembed.inference.predictor import Predictor
from mmembed.inference.speech import AudioInput
from mmembed.inference.video import read_clips
from mmembed.models.text_encoder import tokenize_texts

MODALITIES = ("audio", "image", "video", "text")
MODALITY_OF_SUFFIX = {
    suffix: modality
    for modality, suffixes in (
        ("audio", AUDIO_EXTENSIONS),
        ("image", IMAGE_EXTENSIONS),
        ("video", VIDEO_EXTENSIONS),
    )
    for suffix in suffixes
}


class EmbeddingPredictor(Predictor):
    """``embed(inputs, modality=None)``: see :meth:`embed`."""

    task = "multimodal_embedding"
    extensions = AUDIO_EXTENSIONS + IMAGE_EXTENSIONS + VIDEO_EXTENSIONS

    def __init__(self, artifact, **kwargs):
        super().__init__(artifact, **kwargs)
        preprocessing = self.config["preprocessing"]
        self.width: int = self.config["width"]
        self.audio = AudioInput.from_config(preprocessing["audio"])
        image = preprocessing["image"]
        self.image_transform = eval_transform(
            image["image_size"], mean=image["mean"], std=image["std"]
        )
        video = preprocessing["video"]
        self.sampling = ClipSampling(**video["sampling"])
        self.num_clips: int = video["num_clips"]
        self.video_transform = VideoTransform(
            video["size"], False, mean=video["mean"], std=video["std"]
        )
        self.text_max_length: int | None = preprocessing["text"]["max_length"]

    # --- inputs ----------------------------------------------------------------------------

    def modality_of(self, source: Any) -> str:
        """The modality of a file, by its suffix."""
        suffix = Path(source).suffix.lower() if isinstance(source, (str, PathLike)) else None
        if suffix not in MODALITY_OF_SUFFIX:
            raise InputError(
                f"{source}: not a file kind this model embeds ({', '.join(self.extensions)}); "
                "texts need modality='text'"
            )
        return MODALITY_OF_SUFFIX[suffix]

    def read(self, source: Any, modality: str | None = None) -> tuple[str, Any]:
        """``(modality, model input)`` of one input: a file (its modality from its suffix), or,
        with ``modality``, a text (``"text"``), a waveform array at the model's rate
        (``"audio"``), an image array or PIL image (``"image"``) or decoded frames
        (``"video"``)."""
        if modality is not None and modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        modality = modality or self.modality_of(source)
        if modality == "text":
            if not isinstance(source, str):
                raise InputError(f"text: expected a string, got {type(source).__name__}")
            if not self.tokenizer.encode(source):
                raise InputError(f"text {source!r}: no tokens after normalisation")
            return modality, source
        if modality == "audio":
            return modality, self.audio.read(source)
        if modality == "image":
            return modality, read_image(source, self.image_transform)
        return modality, read_clips(source, self.sampling, self.num_clips, self.video_transform)

    # --- predicting ------------------------------------------------------------------------

    def embed(
        self, inputs: Any | Sequence[Any], modality: str | None = None, batch_size: int = 8
    ) -> np.ndarray:
        """Unit-norm embeddings (N, width) float32 of ``inputs`` (one or a list; always 2-D
        back), in order: audio, image and video files (by suffix), or, with ``modality``, texts
        (``modality="text"``) or in-memory inputs of that modality (see :meth:`read`).
        Raises :class:`~mmembed.inference.inputs.InputError` naming an input it cannot use."""
        single = isinstance(inputs, (str, PathLike, np.ndarray, torch.Tensor, Image.Image))
        items = [inputs] if single or not isinstance(inputs, Sequence) else list(inputs)
        read = [self.read(item, modality) for item in items]
        return self.vectors(read, batch_size).cpu().numpy()

    def predict_texts(self, texts: Sequence[str], batch_size: int = 8) -> Iterator[dict[str, Any]]:
        """One record per text, in order (as :meth:`predict_files` gives files'): ``{"input":
        "text:<i>", "text": ..., "modality": "text", "embedding": [...]}``, or ``"error"``."""
        records = [{"input": f"text:{index}", "text": text} for index, text in enumerate(texts)]
        return self.predict_records(
            records, texts, lambda text: self.read(text, "text"), batch_size
        )

    def vectors(
        self, items: Sequence[tuple[str, Any]], batch_size: int | None = None
    ) -> torch.Tensor:
        """Embeddings (N, width) of read inputs (:meth:`read`), in their order."""
        out = torch.empty(len(items), self.width)
        size = batch_size or max(len(items), 1)
        for modality in MODALITIES:
            indices = [i for i, (kind, _) in enumerate(items) if kind == modality]
            if modality == "audio":  # similar lengths share a batch (less padding)
                indices.sort(key=lambda i: items[i][1].numel())
            for start in range(0, len(indices), size):
                chunk = indices[start : start + size]
                out[chunk] = self._embed_batch(modality, [items[i][1] for i in chunk]).cpu()
        return out

    def _embed_batch(self, modality: str, inputs: list[Any]) -> torch.Tensor:
        graph = self.graphs[modality]
        if modality == "text":
            ids, mask = tokenize_texts(self.tokenizer, inputs, self.text_max_length)
            (vectors,) = graph(ids.to(self.device), mask.to(self.device))
        elif modality == "audio":
            batch, lengths = self.audio.batch(inputs)
            (vectors,) = graph(batch.to(self.device), lengths.to(self.device))
        else:  # images (B, 3, H, W); videos (B, K, 3, T, H, W)
            (vectors,) = graph(torch.stack(inputs).to(self.device))
        return vectors.float()

    def run(
        self, items: Sequence[tuple[str, Any]], batch_size: int | None = None
    ) -> list[dict[str, Any]]:
        vectors = self.vectors(items, batch_size)
        return [
            {"modality": modality, "embedding": vector}
            for (modality, _), vector in zip(items, vectors.tolist(), strict=True)
        ]
