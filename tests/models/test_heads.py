"""Output heads over the shared table."""

import math

import pytest
import torch

from mmembed import SharedEmbedding
from mmembed.models.heads import CLIP_MAX_SCALE, ScaledCosineLogits, TiedLogits


def test_tied_logits_score_against_the_table_scaled_by_default_width():
    table = SharedEmbedding(11, 8, out_features=16)
    head = TiedLogits(table)
    hidden = torch.randn(2, 3, 16)
    torch.testing.assert_close(head(hidden), table.logits(hidden) * 16**-0.5)
    assert TiedLogits(table, scale=2.0)(hidden).allclose(table.logits(hidden) * 2.0)


def test_tied_logits_hold_no_second_copy_of_the_table():
    table = SharedEmbedding(11, 8, out_features=16)
    owner = torch.nn.Module()
    owner.embedding = table
    owner.head = TiedLogits(table)
    assert not any(name.startswith("head.") for name in owner.state_dict())
    assert owner.head.embedding is table


def test_scaled_cosine_logits_start_at_clip_temperature_and_are_capped():
    head = ScaledCosineLogits()
    x, labels = torch.randn(4, 6), torch.nn.functional.normalize(torch.randn(3, 6), dim=-1)
    cosine = torch.nn.functional.normalize(x, dim=-1) @ labels.t()
    torch.testing.assert_close(head(x, labels), cosine / 0.07)
    with torch.no_grad():
        head.logit_scale.fill_(math.log(1e4))
    assert head.scale.item() == pytest.approx(CLIP_MAX_SCALE)
    assert not ScaledCosineLogits(learnable=False).logit_scale.requires_grad
