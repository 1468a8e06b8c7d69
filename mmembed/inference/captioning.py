"""Image captioning from an artifact: images in, captions out.

The encoder graph maps images to the decoder's cross-attention keys and values; the beam
search runs on the host over the decoder-step graph, which takes and returns the
self-attention cache explicitly (:mod:`mmembed.models.decoding.cached`, the same host code the
eager model's ``generate`` runs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmembed.data.image_transforms import eval_transform
from mmembed.inference.inputs import IMAGE_EXTENSIONS, InputError
from mmembed.inference.predictor import Predictor
from mmembed.models.decoding import Hypothesis
from mmembed.models.decoding.cached import cached_beam_search, empty_cache

ImageInput = str | PathLike | Image.Image | np.ndarray | torch.Tensor


class CaptionPredictor(Predictor):
    """``caption(images)``: see :meth:`caption`. Images are resized and normalised as in the
    run's evaluation (size and normalisation come from the artifact)."""

    task = "image_captioning"
    extensions = IMAGE_EXTENSIONS

    def __init__(self, artifact, **kwargs):
        super().__init__(artifact, **kwargs)
        preprocessing = self.config["preprocessing"]
        self.image_size: int = preprocessing["image_size"]
        self.transform = eval_transform(
            self.image_size, mean=preprocessing["mean"], std=preprocessing["std"]
        )
        self.search: dict[str, Any] = self.config["search"]

    def read(self, source: ImageInput) -> torch.Tensor:
        """(3, size, size) float (see :func:`read_image`)."""
        return read_image(source, self.transform)

    def caption(
        self, images: ImageInput | Sequence[ImageInput], batch_size: int = 8, **search: Any
    ) -> list[str]:
        """Captions of image files, PIL images or uint8 arrays (one or a list; always a list
        back). ``search`` overrides the exported beam-search settings (``beam_size``,
        ``max_length``, ``length_penalty``, ``no_repeat_ngram_size``)."""
        items = [images] if _is_single(images) else list(images)
        records = self.run([self.read(item) for item in items], batch_size=batch_size, **search)
        return [record["caption"] for record in records]

    def generate(
        self, images: Sequence[torch.Tensor], batch_size: int | None = None, **search: Any
    ) -> list[Hypothesis]:
        """The best hypothesis (tokens, log-likelihood, score) per read image (:meth:`read`),
        as the eager model's ``generate`` gives it. ``search``: see :meth:`caption`."""
        unknown = set(search) - set(self.search)
        if unknown:
            raise ValueError(
                f"unknown search option(s) {sorted(unknown)}; expected {sorted(self.search)}"
            )
        options = {**self.search, **{k: v for k, v in search.items() if v is not None}}
        # the decoder's learned positions bound any requested length
        options["max_length"] = min(options["max_length"], self.config["max_generated_tokens"])
        layout = tuple(self.config["cache_layout"])
        hypotheses: list[Hypothesis] = []
        size = batch_size or len(images)
        for start in range(0, len(images), size):
            batch = torch.stack(list(images[start : start + size])).to(self.device)
            (memory_cache,) = self.graphs["encoder"](batch)

            def step(tokens, cache, owners, memory_cache=memory_cache):
                return self.graphs["decoder_step"](tokens, cache, memory_cache, owners)

            hypotheses += cached_beam_search(
                step,
                lambda rows: empty_cache(layout, rows, self.device),
                batch.shape[0],
                self.tokenizer.bos_id,
                self.tokenizer.eos_id,
                device=self.device,
                **options,
            )
        return hypotheses

    def run(
        self, items: Sequence[torch.Tensor], batch_size: int | None = None, **search: Any
    ) -> list[dict[str, Any]]:
        return [
            {"caption": self.tokenizer.decode(hyp.tokens), "score": hyp.score}
            for hyp in self.generate(items, batch_size, **search)
        ]


def _is_single(images: Any) -> bool:
    return isinstance(images, (str, PathLike, Image.Image, np.ndarray, torch.Tensor))


def read_image(source: ImageInput, transform: Callable[[Any], torch.Tensor]) -> torch.Tensor:
    """``transform`` of an image file, a PIL image, an (H, W, 3) uint8 array or a (3, H, W)
    uint8 tensor; :class:`~mmembed.inference.inputs.InputError` naming it if unusable."""
    if isinstance(source, (str, PathLike)):
        try:
            with Image.open(source) as image:
                source = image.convert("RGB")
        except (OSError, ValueError) as err:
            raise InputError(f"{source}: cannot read the image ({err})") from err
    elif isinstance(source, Image.Image):
        source = source.convert("RGB")
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        # torchvision's layouts: numpy arrays (H, W, 3), tensors (3, H, W)
        tensor = isinstance(source, torch.Tensor)
        channels = source.shape[0 if tensor else -1] if source.ndim == 3 else None
        if channels != 3 or source.dtype not in (np.uint8, torch.uint8):
            expected = "(3, H, W) uint8 tensor" if tensor else "(H, W, 3) uint8 array"
            raise InputError(
                f"image array: expected an {expected}, got {source.dtype} {tuple(source.shape)}"
            )
    else:
        raise InputError(f"not an image: {type(source).__name__}")
    return transform(source)
