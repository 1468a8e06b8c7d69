"""The shared space's parts: pooled embeddings, the multi-positive contrastive loss, the text
encoder with Transformer layers."""

import pytest
import torch
import torch.nn.functional as F

from mmembed import SharedEmbedding
from mmembed.models.heads import ScaledCosineLogits
from mmembed.models.retrieval import PooledProjection, contrastive_loss, positive_mask
from mmembed.models.text_encoder import LabelTextEncoder
from mmembed.text import train_tokenizer


def unit(rows, width=8):
    return F.normalize(torch.randn(rows, width), dim=-1)


def test_with_one_positive_each_it_is_clips_symmetric_cross_entropy():
    queries, keys, head = unit(6), unit(6), ScaledCosineLogits()
    logits = head.scale * queries @ keys.t()
    labels = torch.arange(6)
    clip = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    torch.testing.assert_close(contrastive_loss(queries, keys, head), clip)


def test_a_second_positive_is_pulled_closer_not_pushed_away():
    """An image with two captions (or two items with one text): with both marked positive
    (MIL-NCE) a step of the loss moves the query towards its second positive; with only the
    diagonal positive it is pushed away from it, as from a negative."""
    # keys orthogonal to each other and to the queries: every logit starts at 0 and the sign of
    # each effect is exact, whatever the seed
    keys, start = torch.eye(8)[:4], torch.eye(8)[4:]
    head = ScaledCosineLogits()
    texts = ["a", "a", "b", "c"]  # items 0 and 1 share their text
    directions = {}
    for name, positives in (("aware", positive_mask(texts, texts)), ("naive", None)):
        queries = start.clone().requires_grad_()
        contrastive_loss(queries, keys, head, positives).backward()
        directions[name] = float(-queries.grad[0] @ keys[1])  # descent along key 1
    assert directions["aware"] > 0 > directions["naive"]


def test_rows_without_a_positive_are_left_out_and_gradients_stay_finite():
    queries = unit(3).requires_grad_()
    keys = unit(5)  # five class names, only two present in the batch
    positives = F.one_hot(torch.tensor([0, 0, 2]), 5).bool()
    loss = contrastive_loss(queries, keys, ScaledCosineLogits(), positives)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(queries.grad).all()


def test_positive_mask_marks_equal_keys():
    mask = positive_mask(["x", "y", "x"], ["x", "z"])
    assert mask.tolist() == [[True, False], [False, False], [True, False]]


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_pooled_projection_ignores_padding_and_is_unit_norm(pooling):
    pool = PooledProjection(8, pooling, num_heads=2)
    if pooling == "attention":
        torch.nn.init.normal_(pool.query)  # a trained query, not the mean it starts as
    frames = torch.randn(1, 5, 8)
    padded = torch.cat([frames, torch.randn(1, 3, 8) * 100], dim=1)
    alone = pool(frames, torch.tensor([5]))
    torch.testing.assert_close(pool(padded, torch.tensor([5])), alone)
    torch.testing.assert_close(alone.norm(dim=-1), torch.ones(1))
    torch.testing.assert_close(pool(frames).norm(dim=-1), torch.ones(1))


def test_text_encoder_layers_see_real_tokens_only():
    tokenizer = train_tokenizer(["moving left", "growing", "a b"], kind="char")
    encoder = LabelTextEncoder(tokenizer, SharedEmbedding(tokenizer.vocab_size, 8, 16),
                               num_layers=1, num_heads=2, ffn_dim=32).eval()  # fmt: skip
    together = encoder(["growing", "moving left"])
    alone = encoder(["growing"])
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together.norm(dim=-1), torch.ones(2))
    ids, mask = encoder.tokenize(["growing"])
    torch.testing.assert_close(encoder.encode(ids, mask), alone)


def test_attention_pooling_starts_as_the_mean_of_its_values():
    pool = PooledProjection(8, "attention", num_heads=2)
    frames = torch.randn(3, 5, 8)
    lengths = torch.tensor([5, 3, 1])
    values = pool.key_value(frames)[..., 8:]
    means = torch.stack([values[i, :n].mean(dim=0) for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(pool(frames, lengths), F.normalize(pool.projection(means), dim=-1))
