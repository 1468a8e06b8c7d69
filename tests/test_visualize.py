"""Tests for mmembed.visualize and scripts/visualize_embedding.py."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from PIL import Image

from helpers.scripts import load_script
from mmembed.visualize import _select_rows, plot_embedding_projections, plot_shared_space

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 0 and pixels.shape[1] > 0
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 0 and image.size[1] > 0


@pytest.fixture
def table() -> torch.Tensor:
    return torch.randn(40, 8, generator=torch.Generator().manual_seed(0))


def test_writes_both_pngs(tmp_path: Path, table: torch.Tensor) -> None:
    out = tmp_path / "plots" / "nested"
    paths = plot_embedding_projections(
        table, out, labels={0: "zero", 7: "seven", 39: "last"}, title="test"
    )
    assert paths == {"pca": out / "embedding_pca.png", "tsne": out / "embedding_tsne.png"}
    for path in paths.values():
        assert_valid_png(path)


def test_numpy_table_single_method(tmp_path: Path, table: torch.Tensor) -> None:
    paths = plot_embedding_projections(table.numpy(), tmp_path, methods="pca")
    assert list(paths) == ["pca"]
    assert_valid_png(paths["pca"])
    assert not (tmp_path / "embedding_tsne.png").exists()


def test_tiny_table_clamps_perplexity(tmp_path: Path) -> None:
    small = np.arange(15, dtype=np.float32).reshape(5, 3) ** 1.5
    paths = plot_embedding_projections(small, tmp_path, methods=("tsne",), perplexity=50)
    assert_valid_png(paths["tsne"])


def test_subsample_keeps_labelled_rows(tmp_path: Path) -> None:
    big = np.random.default_rng(1).normal(size=(500, 4))
    rows = _select_rows(500, [3, 498], max_points=50, seed=0)
    assert len(rows) == 50 and {3, 498} <= set(rows.tolist())
    assert np.array_equal(rows, _select_rows(500, [3, 498], max_points=50, seed=0))
    # More labels than max_points: every labelled row is still plotted.
    assert len(_select_rows(500, list(range(60)), max_points=50, seed=0)) == 60
    paths = plot_embedding_projections(big, tmp_path, labels={498: "x"}, max_points=50)
    for path in paths.values():
        assert_valid_png(path)


@pytest.mark.parametrize(
    ("table", "kwargs", "message"),
    [
        (np.zeros(10), {}, r"must be 2-D .*\(10,\)"),
        (np.zeros((2, 3, 4)), {}, r"must be 2-D"),
        (np.zeros((2, 4)), {}, r"at least 3 rows, got 2"),
        (np.zeros((5, 1)), {}, r"at least 2 columns"),
        (np.full((5, 2), np.nan), {}, r"non-finite values \(first in row 0\)"),
        (np.zeros((5, 2)), {"methods": ("pca", "umap")}, r"unknown projection method 'umap'"),
        (np.zeros((5, 2)), {"methods": ()}, r"methods is empty"),
        (np.zeros((10, 2)), {"labels": {10: "x"}}, r"label id 10 .* table with 10 rows"),
        (np.zeros((10, 2)), {"labels": {-1: "x"}}, r"label id -1 .* table with 10 rows"),
        (np.zeros((10, 2)), {"labels": {"a": "x"}}, r"label id 'a' is not an integer"),
        (np.zeros((10, 2)), {"max_points": 2}, r"max_points must be at least 3"),
        (np.zeros((10, 2)), {"perplexity": 0}, r"perplexity must be a positive number"),
    ],
)
def test_errors(tmp_path: Path, table: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plot_embedding_projections(table, tmp_path, **kwargs)
    assert not list(tmp_path.glob("*.png"))


# --------------------------------------------------------------------------- CLI script


@pytest.fixture(scope="module")
def script():
    return load_script("visualize_embedding")


def test_script_table_with_labels(
    tmp_path: Path, script, table: torch.Tensor, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save({"embed.weight": table, "bias": torch.zeros(3, 3)}, tmp_path / "model.pt")
    (tmp_path / "labels.txt").write_text("0\tfirst\n\n5\tfifth\n")
    out = tmp_path / "out"
    argv = ["--table", str(tmp_path / "model.pt"), "--key", "embed.weight"]
    paths = script.main([*argv, "--labels", str(tmp_path / "labels.txt"), "--out", str(out)])
    assert capsys.readouterr().out.split() == [
        str(out / "embedding_pca.png"),
        str(out / "embedding_tsne.png"),
    ]
    for path in paths.values():
        assert_valid_png(path)


def test_script_table_errors(tmp_path: Path, script, table: torch.Tensor) -> None:
    torch.save({"a": table, "b": table}, tmp_path / "sd.pt")
    with pytest.raises(SystemExit, match="choose --key from: a, b"):
        script.main(["--table", str(tmp_path / "sd.pt"), "--out", str(tmp_path)])
    torch.save(table, tmp_path / "t.pt")
    (tmp_path / "labels.txt").write_text("0\tok\n99\ttoo far\n")
    with pytest.raises(SystemExit, match="label id 99 is out of range for a table with 40 rows"):
        script.main(
            ["--table", str(tmp_path / "t.pt"), "--labels", str(tmp_path / "labels.txt")]
            + ["--out", str(tmp_path)]
        )
    (tmp_path / "bad.txt").write_text("0 no tab\n")
    with pytest.raises(SystemExit, match=r"bad\.txt, line 1: expected 'id<TAB>label'"):
        script.main(["--table", str(tmp_path / "t.pt"), "--labels", str(tmp_path / "bad.txt")])


def test_script_glove_words(tmp_path: Path, script, capsys: pytest.CaptureFixture[str]) -> None:
    words = ["king", "queen", "man", "woman", "zzzznotaword"]
    table, labels = script.glove_table(words, num_context=30)
    assert sorted(labels.values()) == ["king", "man", "queen", "woman"]
    assert table.shape == (34, 50)
    assert "zzzznotaword" in capsys.readouterr().err
    out = tmp_path / "glove"
    paths = script.main(["--glove-words", *words, "--num-context", "30", "--out", str(out)])
    assert_valid_png(paths["pca"]) and assert_valid_png(paths["tsne"])


def test_shared_space_plots_every_group_in_one_projection(tmp_path: Path) -> None:
    groups = {
        "audio": torch.randn(40, 16),
        "image": np.random.default_rng(0).normal(size=(2, 16)),  # a group may be tiny
        "text": torch.randn(500, 16),
    }
    for method in ("pca", "tsne"):
        path = plot_shared_space(groups, tmp_path / f"{method}.png", method=method,
                                 max_points_per_group=100)  # fmt: skip
        assert_valid_png(path)
    with pytest.raises(ValueError, match="share one space"):
        plot_shared_space({"a": torch.randn(5, 4), "b": torch.randn(5, 3)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="group 'b' must be a non-empty"):
        plot_shared_space({"a": torch.randn(5, 4), "b": torch.empty(0, 4)}, tmp_path / "x.png")
