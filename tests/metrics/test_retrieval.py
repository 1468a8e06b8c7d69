"""Retrieval scores with several positives per query, against a brute-force computation."""

import pytest
import torch
from torchmetrics.retrieval import RetrievalHitRate

from mmembed.metrics.retrieval import first_positive_ranks, retrieval_scores, save_retrieval_grid


def brute_force_scores(similarity, positives, ks=(1, 5, 10)):
    """Rank the gallery of each query by hand (a negative ahead of a positive on ties) and find
    the first positive."""
    ranks = []
    for scores, relevant in zip(similarity.tolist(), positives.tolist(), strict=True):
        order = sorted(range(len(scores)), key=lambda j: (-scores[j], relevant[j]))
        ranks.append(next(place for place, j in enumerate(order, start=1) if relevant[j]))
    ranks.sort()
    scores = {f"r{k}": sum(rank <= k for rank in ranks) / len(ranks) for k in ks}
    scores["median_rank"] = float(ranks[(len(ranks) - 1) // 2])
    return scores


def random_problem(queries=40, gallery=60, positives_per_query=3, ties=False):
    similarity = torch.randn(queries, gallery)
    if ties:  # coarse scores: many exact ties between positives and negatives
        similarity = (similarity * 2).round() / 2
    positives = torch.zeros(queries, gallery, dtype=torch.bool)
    for row in range(queries):
        count = int(torch.randint(1, positives_per_query + 1, ()))
        positives[row, torch.randperm(gallery)[:count]] = True
    return similarity, positives


@pytest.mark.parametrize("ties", [False, True])
def test_scores_match_brute_force(ties):
    for _ in range(5):
        similarity, positives = random_problem(ties=ties)
        expected = brute_force_scores(similarity, positives)
        assert retrieval_scores(similarity, positives) == pytest.approx(expected)


def test_recall_is_torchmetrics_hit_rate_without_ties():
    similarity, positives = random_problem(queries=30, gallery=50)
    indexes = torch.arange(30)[:, None].expand(-1, 50)
    scores = retrieval_scores(similarity, positives)
    for k in (1, 5, 10):
        hit_rate = RetrievalHitRate(top_k=k)(similarity.flatten(), positives.flatten(),
                                              indexes=indexes.flatten())  # fmt: skip
        assert scores[f"r{k}"] == pytest.approx(float(hit_rate))


def test_several_positives_count_the_best_ranked_one():
    similarity = torch.tensor([[0.9, 0.8, 0.1, 0.7], [0.1, 0.2, 0.3, 0.4]])
    positives = torch.tensor([[False, True, False, True], [True, False, False, False]])
    assert first_positive_ranks(similarity, positives).tolist() == [2, 4]
    scores = retrieval_scores(similarity, positives, ks=(1, 2, 4))
    assert scores == {"r1": 0.0, "r2": 0.5, "r4": 1.0, "median_rank": 2.0}


def test_a_collapsed_embedding_scores_zero_not_perfect():
    similarity = torch.ones(5, 5)
    assert retrieval_scores(similarity, torch.eye(5, dtype=torch.bool))["r1"] == 0.0
    assert retrieval_scores(torch.eye(5), torch.eye(5, dtype=torch.bool))["r1"] == 1.0


def test_a_query_without_a_positive_is_named():
    positives = torch.eye(3, dtype=torch.bool)
    positives[1, 1] = False
    with pytest.raises(ValueError, match="1 queries have no positive .*query 1"):
        retrieval_scores(torch.randn(3, 3), positives)
    with pytest.raises(ValueError, match="similarity"):
        retrieval_scores(torch.randn(3, 4), torch.eye(3, dtype=torch.bool))


def test_retrieval_grid_is_a_png(tmp_path):
    images = torch.rand(6, 3, 16, 16)
    ranked = torch.tensor([[0, 1, 2], [5, 4, 3]])
    relevant = torch.zeros(2, 6, dtype=torch.bool)
    relevant[0, 0] = relevant[1, 3] = True
    path = save_retrieval_grid(['spoken: "a cat"', 'typed: "a cat"'], images, ranked, relevant,
                               tmp_path / "grid.png")  # fmt: skip
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="2 queries but 1 rows"):
        save_retrieval_grid(["a", "b"], images, ranked[:1], relevant, tmp_path / "bad.png")
