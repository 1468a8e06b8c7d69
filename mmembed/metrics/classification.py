"""Classification helpers: clip -> video score aggregation and a confusion-matrix plot."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import torch


def video_level_scores(clip_logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities per video from the logits of its K clips: (B, K, N) -> (B, N).

    Averages softmax probabilities, not logits (as torchvision's video references do), so one
    over-confident clip cannot outvote the others.
    """
    if clip_logits.dim() != 3:
        raise ValueError(f"expected clip logits (B, K, N), got shape {tuple(clip_logits.shape)}")
    return clip_logits.float().softmax(dim=-1).mean(dim=1)


def save_confusion_matrix(
    matrix: torch.Tensor,
    class_names: Sequence[str],
    path: str | PathLike,
    title: str = "",
) -> Path:
    """Draw a (N, N) count matrix (rows: true class, columns: predicted) to a PNG.

    Cells are shaded by the fraction of their row (so classes of different sizes compare) and
    labelled with counts. Uses matplotlib's object API with the Agg canvas, so it neither
    switches the caller's backend nor leaks pyplot figures.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = matrix.detach().cpu().to(torch.int64)
    size = len(class_names)
    if counts.shape != (size, size):
        raise ValueError(f"matrix {tuple(counts.shape)} does not fit {size} class names")
    fractions = counts.float() / counts.sum(dim=1, keepdim=True).clamp(min=1)
    side = max(4.0, 0.55 * size + 2.5)
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(fractions.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(size), labels=list(class_names), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(size), labels=list(class_names), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if size <= 30:  # beyond that the numbers are unreadable anyway
        for row in range(size):
            for col in range(size):
                value = int(counts[row, col])
                if value:
                    dark = fractions[row, col] > 0.5
                    ax.text(col, row, str(value), ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")  # fmt: skip
    correct = int(counts.diagonal().sum())
    total = int(counts.sum())
    ax.set_title(f"{title} ({correct}/{total} correct)" if title else f"{correct}/{total} correct")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path
