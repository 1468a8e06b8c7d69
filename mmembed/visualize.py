"""2-D projections (PCA, t-SNE) of an embedding table, or of the embeddings of several
modalities in one shared space, saved as PNG files.

Plots are drawn on a bare Agg canvas rather than through pyplot, so calling this never
switches the caller's matplotlib backend or leaks open figures.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["plot_embedding_projections", "plot_shared_space"]

log = logging.getLogger(__name__)

METHODS = ("pca", "tsne")
_DEFAULT_PERPLEXITY = 30.0


def _as_array(table: torch.Tensor | np.ndarray) -> np.ndarray:
    """Validate ``table`` and return it as a float64 ``(rows, dim)`` array."""
    if isinstance(table, torch.Tensor):
        array = table.detach().to("cpu", torch.float64).numpy()
    else:
        array = np.asarray(table, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"table must be 2-D (rows x dim), got shape {tuple(array.shape)}")
    if array.shape[0] < 3:
        raise ValueError(f"table needs at least 3 rows, got {array.shape[0]}")
    if array.shape[1] < 2:
        raise ValueError(f"table needs at least 2 columns, got {array.shape[1]}")
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise ValueError(f"table has non-finite values (first in row {bad})")
    return array


def _check_methods(methods: Sequence[str] | str) -> tuple[str, ...]:
    """Normalise ``methods`` (a single name is allowed) and reject unknown ones."""
    names = (methods,) if isinstance(methods, str) else tuple(methods)
    if not names:
        raise ValueError(f"methods is empty; choose from {METHODS}")
    for name in names:
        if name not in METHODS:
            raise ValueError(f"unknown projection method {name!r}; choose from {METHODS}")
    return tuple(dict.fromkeys(names))


def _check_labels(labels: Mapping[int, str] | None, rows: int) -> dict[int, str]:
    """Validate label ids against the table size."""
    checked: dict[int, str] = {}
    for key, text in (labels or {}).items():
        try:
            row = operator.index(key)
        except TypeError:
            raise ValueError(f"label id {key!r} is not an integer row id") from None
        if not 0 <= row < rows:
            raise ValueError(
                f"label id {row} is out of range for a table with {rows} rows "
                f"(valid ids: 0..{rows - 1})"
            )
        checked[row] = str(text)
    return checked


def _select_rows(rows: int, labelled: Sequence[int], max_points: int, seed: int) -> np.ndarray:
    """Rows to plot: every labelled row, filled up to ``max_points`` with a seeded sample."""
    if rows <= max_points:
        return np.arange(rows)
    keep = np.zeros(rows, dtype=bool)
    keep[list(labelled)] = True
    room = max_points - int(keep.sum())
    if room > 0:
        rng = np.random.default_rng(seed)
        keep[rng.choice(np.flatnonzero(~keep), size=room, replace=False)] = True
    return np.flatnonzero(keep)


def _effective_perplexity(perplexity: float | None, points: int) -> float:
    """Clamp perplexity below the number of points, as t-SNE requires.

    A third of the points is the usual ceiling for a meaningful neighbourhood size; a
    perplexity at or above the point count is rejected by scikit-learn.
    """
    requested = _DEFAULT_PERPLEXITY if perplexity is None else float(perplexity)
    if not (math.isfinite(requested) and requested > 0):
        raise ValueError(f"perplexity must be a positive number, got {perplexity!r}")
    effective = min(requested, max(1.0, (points - 1) / 3))
    if effective != requested:
        log.info(
            "t-SNE perplexity %.3g clamped to %.3g for %d points", requested, effective, points
        )
    return effective


def _project(
    data: np.ndarray, method: str, seed: int, perplexity: float
) -> tuple[np.ndarray, str, str]:
    """Return ``(coords (n, 2), x-axis label, y-axis label)`` for ``method``."""
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        coords = pca.fit_transform(data)
        ratio = pca.explained_variance_ratio_
        return coords, f"PC1 ({ratio[0]:.1%} variance)", f"PC2 ({ratio[1]:.1%} variance)"
    from sklearn.manifold import TSNE

    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    return tsne.fit_transform(data), "t-SNE 1", "t-SNE 2"


def _save_plot(
    coords: np.ndarray,
    annotations: Mapping[int, str],
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> None:
    """Scatter ``coords``; highlight and annotate the positions in ``annotations``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(coords[:, 0], coords[:, 1], s=6, c="0.65", alpha=0.6, linewidths=0)
    if annotations:
        idx = np.fromiter(annotations, dtype=np.int64)
        ax.scatter(coords[idx, 0], coords[idx, 1], s=24, c="tab:red", zorder=3)
        for pos, text in annotations.items():
            ax.annotate(
                text,
                (coords[pos, 0], coords[pos, 1]),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=9,
                zorder=4,
            )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path, format="png")


def plot_embedding_projections(
    table: torch.Tensor | np.ndarray,
    out_dir: str | Path,
    *,
    labels: Mapping[int, str] | None = None,
    methods: Sequence[str] = METHODS,
    max_points: int = 2000,
    seed: int = 0,
    title: str | None = None,
    perplexity: float | None = None,
) -> dict[str, Path]:
    """Project the rows of ``table`` to 2-D and save one PNG per method.

    Args:
        table: ``(rows, dim)`` embedding table (tensor or array).
        out_dir: folder for ``embedding_<method>.png`` (created if needed).
        labels: row id -> text; those rows are highlighted and annotated.
        methods: any of ``"pca"``, ``"tsne"``.
        max_points: plot at most this many rows (a seeded sample) besides the labelled ones,
            which are always plotted.
        seed: seed of the row sample, PCA solver and t-SNE.
        title: plot title prefix; the method name is appended.
        perplexity: t-SNE perplexity (default 30), clamped below the number of points.

    Returns:
        method -> written PNG path.
    """
    data = _as_array(table)
    names = _check_methods(methods)
    checked = _check_labels(labels, len(data))
    if max_points < 3:
        raise ValueError(f"max_points must be at least 3, got {max_points}")
    rows = _select_rows(len(data), sorted(checked), max_points, seed)
    # Labels keyed by position in the plotted subset.
    position = {int(r): i for i, r in enumerate(rows)}
    annotations = {position[r]: text for r, text in checked.items()}
    effective = _effective_perplexity(perplexity, len(rows)) if "tsne" in names else 0.0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for method in names:
        coords, xlabel, ylabel = _project(data[rows], method, seed, effective)
        heading = f"{method.upper() if method == 'pca' else 't-SNE'} of {len(rows)} rows"
        path = out / f"embedding_{method}.png"
        _save_plot(
            coords,
            annotations,
            path,
            title=f"{title}: {heading}" if title else f"Embedding {heading}",
            xlabel=xlabel,
            ylabel=ylabel,
        )
        paths[method] = path
    return paths


def plot_shared_space(
    groups: Mapping[str, torch.Tensor | np.ndarray],
    path: str | Path,
    *,
    method: str = "pca",
    max_points_per_group: int = 300,
    seed: int = 0,
    title: str | None = None,
    perplexity: float | None = None,
) -> Path:
    """Project the embeddings of several groups (modalities: ``{"audio": (N, D), "text": ...}``)
    together to 2-D and save one scatter PNG, a colour per group.

    All groups are projected jointly, so distances between groups mean something: a shared
    space whose modalities sit in separate clusters is not aligned yet. Each group is
    subsampled (seeded) to ``max_points_per_group`` rows.
    """
    (name,) = _check_methods(method)
    if not groups:
        raise ValueError("no groups to plot")
    rng = np.random.default_rng(seed)
    arrays, names = [], []
    for group, table in groups.items():
        if isinstance(table, torch.Tensor):
            table = table.detach().to("cpu", torch.float64).numpy()
        data = np.asarray(table, dtype=np.float64)
        if data.ndim != 2 or not len(data):
            raise ValueError(f"group {group!r} must be a non-empty (rows, dim) table")
        if len(data) > max_points_per_group:
            data = data[np.sort(rng.choice(len(data), max_points_per_group, replace=False))]
        arrays.append(data)
        names.append(group)
    widths = {array.shape[1] for array in arrays}
    if len(widths) > 1:
        raise ValueError(f"groups differ in width {sorted(widths)}; they must share one space")
    stacked = _as_array(np.concatenate(arrays))
    effective = _effective_perplexity(perplexity, len(stacked)) if name == "tsne" else 0.0
    coords, xlabel, ylabel = _project(stacked, name, seed, effective)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    start = 0
    for group, array in zip(names, arrays, strict=True):
        part = coords[start : start + len(array)]
        ax.scatter(part[:, 0], part[:, 1], s=10, alpha=0.7, linewidths=0, label=group)
        start += len(array)
    heading = f"{'PCA' if name == 'pca' else 't-SNE'} of {len(stacked)} embeddings"
    ax.set_title(f"{title}: {heading}" if title else heading)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(markerscale=2, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
