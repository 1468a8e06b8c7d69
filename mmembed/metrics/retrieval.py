"""Cross-modal retrieval scores (recall@K, median rank) with several positives per query, and a
PNG of the images a few queries retrieve.

A query is answered by ranking the whole gallery by similarity. With several positives (an image
has several captions; a caption such as "an emoji about smile" fits several images) the query's
rank is that of its best-ranked positive, as in COCO/Flickr retrieval evaluations; recall@K is
the share of queries with a positive in the top K. Ties count against the query: a positive
ranks below every negative that scores the same, so a collapsed embedding (everything equal)
scores zero instead of perfect.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import torch

from mmembed.metrics.captioning import _display_arrays

DEFAULT_KS = (1, 5, 10)


def first_positive_ranks(similarity: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """1-based rank of each query's best positive: ``1 +`` the negatives scoring at least as
    high. ``similarity`` and ``positives`` are (Q, G); every query needs a positive."""
    if similarity.shape != positives.shape:
        raise ValueError(
            f"similarity {tuple(similarity.shape)} != positives {tuple(positives.shape)}"
        )
    missing = (~positives.any(dim=1)).nonzero().flatten()
    if len(missing):
        raise ValueError(
            f"{len(missing)} queries have no positive (first: query {int(missing[0])})"
        )
    similarity = similarity.float()
    best = similarity.masked_fill(~positives, float("-inf")).amax(dim=1, keepdim=True)
    return 1 + ((similarity >= best) & ~positives).sum(dim=1)


def retrieval_scores(
    similarity: torch.Tensor, positives: torch.Tensor, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """``{"r1": ..., "r5": ..., "r10": ..., "median_rank": ...}`` of queries (rows) against a
    gallery (columns). K larger than the gallery counts as the whole gallery."""
    ranks = first_positive_ranks(similarity, positives).float()
    scores = {f"r{k}": float((ranks <= k).float().mean()) for k in ks}
    # the lower median, as torch defines it (an integer rank)
    scores["median_rank"] = float(ranks.median())
    return scores


def save_retrieval_grid(
    queries: Sequence[str],
    images: torch.Tensor,
    ranked: torch.Tensor,
    relevant: torch.Tensor,
    path: str | PathLike,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Path:
    """Write a PNG with one row per query: its label (e.g. ``spoken: "grinning face"``), then
    the top images it retrieved, framed green when they are a positive, red when not.

    ``images``: the gallery (G, 3, H, W), normalised with ``mean``/``std`` if given;
    ``ranked``: (Q, K) gallery indices, best first; ``relevant``: (Q, G) bool positives.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not len(queries):
        raise ValueError("no queries to draw")
    rows, top = ranked.shape
    if rows != len(queries):
        raise ValueError(f"{len(queries)} queries but {rows} rows of results")
    side, label_width = 1.3, 2.6
    figure = Figure(figsize=(label_width + top * side, rows * side + 0.3), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(rows, top + 1, width_ratios=[label_width / side] + [1] * top)
    for row, query in enumerate(queries):
        label = figure.add_subplot(grid[row, 0])
        label.set_axis_off()
        label.text(0.0, 0.5, "\n".join(textwrap.wrap(query, 26)), va="center", fontsize=8)
        picks = ranked[row].tolist()
        arrays = _display_arrays(images[picks], len(picks), mean, std)
        for column, (index, array) in enumerate(zip(picks, arrays, strict=True)):
            axes = figure.add_subplot(grid[row, column + 1])
            axes.imshow(array, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            colour = "tab:green" if bool(relevant[row, index]) else "tab:red"
            for spine in axes.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
            if row == 0:
                axes.set_title(f"top {column + 1}", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path

