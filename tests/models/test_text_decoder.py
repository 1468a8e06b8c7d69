"""The text decoder's cached generation step against its full-sequence forward."""

import functools

import pytest
import torch

from mmembed import SharedEmbedding
from mmembed.models.decoding import beam_search
from mmembed.models.decoding.cached import CachedStep, cached_beam_search
from mmembed.models.text_decoder import TransformerTextDecoder

VOCABULARY, WIDTH = 40, 32


def decoder(num_layers=2, max_length=24):
    embedding = SharedEmbedding(VOCABULARY, 16, out_features=WIDTH)
    return TransformerTextDecoder(
        embedding, num_layers=num_layers, num_heads=4, ffn_dim=64, max_length=max_length
    ).eval()


@pytest.mark.parametrize("padded", [False, True])
def test_each_cached_step_gives_the_full_forward_logits(padded):
    model = decoder()
    memory = torch.randn(3, 7, WIDTH)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    if padded:
        mask[0, 4:] = True
        mask[2, 1:] = True
    ids = torch.randint(4, VOCABULARY, (3, 10))
    with torch.no_grad():
        full = model(ids, memory, memory_padding_mask=mask if padded else None)
        expected = full.float().log_softmax(-1)
        memory_cache = model.memory_cache(memory)
        cache = model.empty_cache(3)
        for position in range(ids.shape[1]):
            log_probs, cache = model.step(
                ids[:, position], cache, memory_cache, torch.arange(3), mask if padded else None
            )
            # same modules in the same order: equal up to float rounding of other shapes
            torch.testing.assert_close(log_probs, expected[:, position], rtol=1e-5, atol=2e-5)
    assert cache.shape == (2, 2, 3, 4, ids.shape[1], WIDTH // 4)


def test_owners_pick_each_hypothesis_memory():
    model = decoder(num_layers=1)
    memory = torch.randn(2, 5, WIDTH)
    owners = torch.tensor([1, 0, 1])
    tokens = torch.randint(4, VOCABULARY, (3,))
    with torch.no_grad():
        log_probs, _ = model.step(tokens, model.empty_cache(3), model.memory_cache(memory), owners)
        alone = model(tokens[:, None], memory[owners])[:, -1].float().log_softmax(-1)
    torch.testing.assert_close(log_probs, alone, rtol=1e-5, atol=2e-5)


def test_step_refuses_positions_past_max_length():
    model = decoder(num_layers=1, max_length=3)
    memory_cache = model.memory_cache(torch.randn(1, 2, WIDTH))
    full = torch.zeros(1, 2, 1, 4, 3, WIDTH // 4)
    with pytest.raises(ValueError, match="position 3 exceeds max_length=3"):
        model.step(torch.tensor([5]), full, memory_cache, torch.tensor([0]))


@pytest.mark.parametrize("beam_size", [1, 3])
def test_cached_beam_search_finds_what_full_recomputation_finds(beam_size):
    """Same hypotheses, tokens and scores as the uncached search over the full forward, with
    beams that reorder, finish early and restart (the greedy pass after the beam)."""
    model = decoder()
    with torch.no_grad():
        # peaked output rows, as in a trained model (and no near-ties)
        model.embedding.weight.mul_(4.0)
    memory = torch.randn(4, 6, WIDTH)
    options = dict(beam_size=beam_size, max_length=12, length_penalty=1.0, no_repeat_ngram_size=2)

    def full(prefixes, owners):
        return model(prefixes, memory[owners])[:, -1].float().log_softmax(-1)

    memory_cache = model.memory_cache(memory)
    with torch.no_grad():
        expected = beam_search(full, 4, 2, 3, **options)
        got = cached_beam_search(
            lambda tokens, cache, owners: model.step(tokens, cache, memory_cache, owners),
            functools.partial(model.empty_cache, like=memory),
            4,
            2,
            3,
            **options,
        )
    assert [h.tokens for h in got] == [h.tokens for h in expected]
    assert any(len(h.tokens) > 1 for h in got)
    for a, b in zip(got, expected, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-4)


def test_cached_step_feeds_each_hypothesis_its_parent_rows():
    seen = []

    def step(tokens, cache, owners):
        seen.append(cache[0, 0, :, 0, :, 0].clone())
        # the cache records each hypothesis's tokens, so rows must follow their parents
        grown = torch.cat(
            [cache, tokens.float().view(1, 1, -1, 1, 1, 1).expand(1, 2, -1, 1, 1, 1)], 4
        )
        return torch.zeros(len(tokens), 6).log_softmax(-1), grown

    cached = CachedStep(step, lambda rows: torch.zeros(1, 2, rows, 1, 0, 1))
    cached(torch.tensor([[2], [2]]), torch.tensor([0, 1]))
    cached(torch.tensor([[2, 5], [2, 4], [2, 5]]), torch.tensor([1, 0, 0]))
    assert seen[-1].tolist() == [[2.0], [2.0], [2.0]]
    cached(torch.tensor([[2, 4, 1], [2, 5, 0]]), torch.tensor([0, 1]))
    assert seen[-1].tolist() == [[2.0, 4.0], [2.0, 5.0]]
