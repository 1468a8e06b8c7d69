"""Plot PCA / t-SNE projections of an embedding table.

Examples:
    python scripts/visualize_embedding.py --glove-words king queen man woman --out plots/
    python scripts/visualize_embedding.py --table model.pt --key embed.weight \\
        --labels labels.txt --out plots/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

try:
    from mmembed.pretrained import glove_6b_50d_words, load_glove_6b_50d
    from mmembed.visualize import METHODS, plot_embedding_projections
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mmembed.pretrained import glove_6b_50d_words, load_glove_6b_50d
    from mmembed.visualize import METHODS, plot_embedding_projections


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; exactly one of ``--glove-words`` / ``--table`` is required."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--glove-words", nargs="+", metavar="WORD", help="plot these GloVe 6B 50d words"
    )
    source.add_argument("--table", type=Path, help="saved tensor or state_dict (.pt)")
    parser.add_argument(
        "--num-context",
        type=int,
        default=500,
        help="with --glove-words: also plot this many most frequent words (default 500)",
    )
    parser.add_argument("--key", help="with --table: state_dict entry holding the table")
    parser.add_argument("--labels", type=Path, help="with --table: file of 'id<TAB>label' lines")
    parser.add_argument("--out", type=Path, default=Path("embedding_plots"), help="output dir")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--max-points", type=int, default=2000)
    parser.add_argument("--perplexity", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    if args.glove_words is not None and (args.key or args.labels):
        parser.error("--key and --labels go with --table, not --glove-words")
    if args.num_context < 0:
        parser.error("--num-context must be >= 0")
    return args


def glove_table(words: Sequence[str], num_context: int) -> tuple[torch.Tensor, dict[int, str]]:
    """GloVe rows of ``words`` (labelled) plus the ``num_context`` most frequent words."""
    given = set(words)
    context = [w for w in glove_6b_50d_words(num_context) if w not in given]
    vectors = load_glove_6b_50d([*words, *context], lowercase_fallback=True)
    if vectors.missing:
        print(f"not in GloVe 6B, skipped: {' '.join(vectors.missing)}", file=sys.stderr)
    missing = set(vectors.missing)
    keep = [i for i, w in enumerate([*words, *context]) if w not in missing]
    labels = {row: words[i] for row, i in enumerate(keep) if i < len(words)}
    return vectors.weight[keep], labels


def load_table(path: Path, key: str | None) -> torch.Tensor:
    """A 2-D tensor saved directly, or entry ``key`` of a saved state_dict."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, torch.Tensor):
        return obj
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: expected a tensor or a state_dict, got {type(obj).__name__}")
    if key is None:
        tables = [k for k, v in obj.items() if isinstance(v, torch.Tensor) and v.dim() == 2]
        if len(tables) != 1:
            raise SystemExit(f"{path} is a state_dict; choose --key from: {', '.join(obj)}")
        key = tables[0]
    if key not in obj:
        raise SystemExit(f"{path} has no entry {key!r}; entries: {', '.join(obj)}")
    return obj[key]


def read_labels(path: Path) -> dict[int, str]:
    """Parse ``id<TAB>label`` lines (blank lines ignored)."""
    labels: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row, sep, text = line.partition("\t")
        if not sep or not row.strip().lstrip("-").isdigit():
            raise SystemExit(f"{path}, line {lineno}: expected 'id<TAB>label', got {line!r}")
        labels[int(row)] = text
    return labels


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """Write the plots and print their paths."""
    args = parse_args(argv)
    try:
        if args.glove_words is not None:
            table, labels = glove_table(args.glove_words, args.num_context)
            title = args.title or "GloVe 6B 50d"
        else:
            table = load_table(args.table, args.key)
            labels = read_labels(args.labels) if args.labels else None
            title = args.title or args.table.name
        paths = plot_embedding_projections(
            table,
            args.out,
            labels=labels,
            methods=args.methods,
            max_points=args.max_points,
            seed=args.seed,
            title=title,
            perplexity=args.perplexity,
        )
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    for path in paths.values():
        print(path)
    return paths


if __name__ == "__main__":
    main()
