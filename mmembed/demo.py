"""The layer demo (``make demo``): real GloVe vectors through a SharedEmbedding, nearest
neighbours and PCA/t-SNE plots.

    mmembed-demo --out outputs/demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mmembed import SharedEmbedding
from mmembed.pretrained import glove_6b_50d_words, load_glove_6b_50d
from mmembed.visualize import plot_embedding_projections

QUERIES = ["king", "paris", "music", "computer", "river"]


def nearest(layer: SharedEmbedding, vocab: list[str], word: str, k: int = 5) -> list[str]:
    """The k rows closest (cosine) to ``word``'s row, looked up through the layer."""
    table = torch.nn.functional.normalize(layer(torch.arange(len(vocab))), dim=-1)
    scores = table @ table[vocab.index(word)]
    scores[vocab.index(word)] = -1
    return [vocab[i] for i in scores.topk(k).indices.tolist()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="outputs/demo", help="folder for the plots")
    parser.add_argument("--vocab-size", type=int, default=5000)
    args = parser.parse_args(argv)

    vocab = glove_6b_50d_words(limit=args.vocab_size)
    vectors = load_glove_6b_50d(vocab)
    layer = SharedEmbedding.from_pretrained(vectors.weight, freeze=True)
    print(f"{layer}: {vectors.found}/{len(vocab)} GloVe 6B 50d rows")
    for word in QUERIES:
        print(f"  nearest to {word!r}: {', '.join(nearest(layer, vocab, word))}")

    labels = {vocab.index(w): w for w in QUERIES + ["queen", "london", "song", "software", "lake"]}
    title = "GloVe 6B 50d through SharedEmbedding"
    paths = plot_embedding_projections(
        layer.weight.detach(), Path(args.out), labels=labels, max_points=1500, title=title
    )
    for method, path in paths.items():
        print(f"  {method} plot: {path}")


if __name__ == "__main__":
    main()
