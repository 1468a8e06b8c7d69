"""Captioning metrics (BLEU-1..4, ROUGE-L, CIDEr-D), a DDP-safe torchmetrics wrapper, and a
PNG grid of images with generated and reference captions.

Scores come from ``pycocoevalcap``'s scorers, the code behind the COCO caption leaderboard.
Its ``Cider`` class *is* CIDEr-D (the variant the leaderboard reports): clipped n-gram counts,
a Gaussian length penalty with sigma 6, and the x10 scale. Its IDF weights come from the
references of the set being scored, so scores are comparable between runs on the same set but
not across sets, and a set of one image scores 0. Text is tokenised here (lowercase, accents
folded, punctuation dropped) instead of by its PTB tokenizer, which needs Java; METEOR and SPICE
need Java too and are left out.
"""

from __future__ import annotations

import math
import re
import textwrap
import unicodedata
from collections.abc import Hashable, Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["METRIC_NAMES", "CaptionMetrics", "caption_scores", "save_caption_grid", "tokenize"]

METRIC_NAMES = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d")

_NOT_WORD = re.compile(r"[^\w']+|_+")
_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'+|'+(?!\w)")


def tokenize(text: str) -> str:
    """Space-separated lowercase words: accents folded, punctuation dropped, apostrophes kept
    inside words ("o'clock"), like the training-text normalisation of ``mmembed.text``."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = _EDGE_APOSTROPHES.sub(" ", _NOT_WORD.sub(" ", text))
    return " ".join(text.split())


def caption_scores(
    hypotheses: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]
) -> dict[str, float]:
    """Corpus-level BLEU-1..4, ROUGE-L and CIDEr-D of one hypothesis per image id against that
    image's references (any number per image)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    _check_ids(hypotheses, references)
    res = {key: [tokenize(hypotheses[key])] for key in hypotheses}
    gts = {key: [tokenize(reference) for reference in references[key]] for key in hypotheses}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    values = [*bleu, rouge, cider]
    return {name: float(value) for name, value in zip(METRIC_NAMES, values, strict=True)}


def caption_diversity(hypotheses: Iterable[str]) -> float:
    """Distinct generated captions per image (1.0: every image got its own caption).

    A captioner that has collapsed onto a few frequent captions scores near 0 here even when
    BLEU on a validation set drawn from the training distribution still looks fine."""
    texts = [" ".join(tokenize(text)) for text in hypotheses]
    return len(set(texts)) / len(texts) if texts else 0.0


def _check_ids(hypotheses: Mapping[Hashable, str], references: Mapping[Hashable, Any]) -> None:
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    unreferenced = [key for key in hypotheses if key not in references]
    unanswered = [key for key in references if key not in hypotheses]
    if unreferenced or unanswered:
        raise ValueError(
            "hypotheses and references must have the same image ids; "
            f"without references: {unreferenced[:5]}, without hypothesis: {unanswered[:5]}"
        )
    for key, refs in references.items():
        if isinstance(refs, str) or not refs:
            raise ValueError(f"image id {key!r}: references must be a non-empty list of strings")


class CaptionMetrics(Metric):
    """Accumulates (image id, hypothesis, references) over batches; ``compute()`` returns
    :func:`caption_scores` as a dict of scalar tensors.

    Correct under DDP: the texts are kept as UTF-8 bytes in int64 tensors, gathered from every
    rank with ``dist_reduce_fx="cat"`` and decoded again, so the scores are those of the whole
    set, never a mean of per-rank scores (CIDEr-D's IDF depends on the whole set). An image id
    seen twice (DistributedSampler pads ranks with repeated samples) counts once.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    _STATES = (
        "image_ids",
        "hypothesis_bytes",
        "hypothesis_lengths",
        "reference_bytes",
        "reference_lengths",
        "reference_counts",
    )

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        for name in self._STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        # torchmetrics fills an empty rank's states with a tensor of the metric dtype before
        # gathering; it must match the int64 states of the other ranks.
        self.set_dtype(torch.int64)

    def update(
        self,
        image_ids: torch.Tensor | Sequence[int],
        hypotheses: Sequence[str],
        references: Sequence[Sequence[str]],
    ) -> None:
        ids = torch.as_tensor(image_ids, dtype=torch.int64).flatten()
        if not len(ids) == len(hypotheses) == len(references):
            raise ValueError(
                f"got {len(ids)} image ids, {len(hypotheses)} hypotheses and "
                f"{len(references)} reference lists; they must match"
            )
        if any(isinstance(refs, str) or not refs for refs in references):
            raise ValueError("every image needs a non-empty list of reference strings")
        flat_references = [ref for refs in references for ref in refs]
        hyp_bytes, hyp_lengths = self._encode(hypotheses)
        ref_bytes, ref_lengths = self._encode(flat_references)
        self.image_ids.append(ids.to(self.device))
        self.hypothesis_bytes.append(hyp_bytes)
        self.hypothesis_lengths.append(hyp_lengths)
        self.reference_bytes.append(ref_bytes)
        self.reference_lengths.append(ref_lengths)
        self.reference_counts.append(
            torch.tensor([len(refs) for refs in references], dtype=torch.int64, device=self.device)
        )

    def _encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = [text.encode("utf-8") for text in texts]
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.int64)
        lengths = [len(chunk) for chunk in encoded]
        return (
            torch.from_numpy(data).to(self.device),
            torch.tensor(lengths, dtype=torch.int64, device=self.device),
        )

    def compute(self) -> dict[str, torch.Tensor]:
        """:func:`caption_scores` plus ``diversity`` (:func:`caption_diversity`)."""
        hypotheses, references = self.texts()
        scores = caption_scores(hypotheses, references)
        scores["diversity"] = caption_diversity(hypotheses.values())
        return {name: torch.tensor(value, dtype=torch.float32) for name, value in scores.items()}

    def texts(self) -> tuple[dict[int, str], dict[int, list[str]]]:
        """The accumulated hypotheses and references by image id (all ranks after a sync)."""
        # Lists of per-batch tensors before a DDP sync, one gathered tensor after it.
        if isinstance(self.image_ids, list) and not self.image_ids:
            return {}, {}
        ids = dim_zero_cat(self.image_ids).tolist()
        hyps = _decode(dim_zero_cat(self.hypothesis_bytes), dim_zero_cat(self.hypothesis_lengths))
        refs = _decode(dim_zero_cat(self.reference_bytes), dim_zero_cat(self.reference_lengths))
        counts = dim_zero_cat(self.reference_counts).tolist()
        hypotheses: dict[int, str] = {}
        references: dict[int, list[str]] = {}
        start = 0
        for image_id, hypothesis, count in zip(ids, hyps, counts, strict=True):
            if image_id not in hypotheses:
                hypotheses[image_id] = hypothesis
                references[image_id] = refs[start : start + count]
            start += count
        return hypotheses, references


def _decode(data: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    raw = bytes(data.to("cpu", torch.uint8).numpy())
    texts, start = [], 0
    for length in lengths.tolist():
        texts.append(raw[start : start + length].decode("utf-8"))
        start += length
    return texts


def save_caption_grid(
    images: torch.Tensor | Sequence[Any],
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]] | None,
    path: str | PathLike,
    max_items: int = 16,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    columns: int = 4,
    references_shown: int = 3,
) -> Path:
    """Write a PNG grid: each image with its generated caption and up to ``references_shown``
    references under it.

    ``images`` is a (B, 3, H, W) tensor (floats in [0, 1], uint8, or normalised ones with the
    ``mean``/``std`` used to normalise them) or a sequence of PIL images / HxWx3 arrays. Drawn
    on a bare Agg canvas, so the caller's matplotlib backend is never switched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    count = min(len(hypotheses), len(images), max_items)
    if count == 0:
        raise ValueError("no images to draw")
    if references is not None and len(references) < count:
        raise ValueError(f"{count} images but only {len(references)} reference lists")
    arrays = _display_arrays(images, count, mean, std)
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    # Sizes in inches: each cell is an image with a block of caption text under it.
    image_side, text_height, margin = 2.4, 1.3, 0.15
    width = columns * (image_side + 0.4)
    height = rows * (image_side + text_height) + 2 * margin
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(
        left=0.2 / width,
        right=1 - 0.2 / width,
        top=1 - margin / height,
        bottom=(text_height + margin) / height,
        hspace=text_height / image_side,
        wspace=0.4 / image_side,
    )
    for index in range(count):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(arrays[index], interpolation="nearest")
        axes.set_axis_off()
        lines = [_wrap(f"gen: {hypotheses[index]}")]
        if references is not None:
            lines += [_wrap(f"ref: {ref}") for ref in references[index][:references_shown]]
        axes.text(
            0.5, -0.03, "\n".join(lines), transform=axes.transAxes, ha="center", va="top",
            fontsize=7,
        )  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _wrap(text: str, width: int = 38) -> str:
    return "\n".join(textwrap.wrap(text, width) or [""])


def _display_arrays(
    images: torch.Tensor | Sequence[Any],
    count: int,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> list[np.ndarray]:
    if isinstance(images, torch.Tensor):
        batch = images[:count].detach().to("cpu")
        batch = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
        if mean is not None and std is not None:
            batch = batch * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
        return list(batch.clamp(0.0, 1.0).permute(0, 2, 3, 1).numpy())
    return [np.asarray(image) for image in list(images)[:count]]
