"""Batched beam search against exhaustive and greedy decoding on toy bigram models."""

import itertools

import pytest
import torch

from mmembed.models.decoding import beam_search, greedy_search

BOS, EOS, VOCAB = 0, 1, 6


def bigram_step(tables: torch.Tensor):
    """Item i's next-token log-probs depend only on its last token: tables[i, last]."""

    def step(prefixes, owners):
        return tables[owners, prefixes[:, -1]]

    return step


def random_tables(batch, seed, sharpness=2.0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, VOCAB, VOCAB, generator=generator) * sharpness
    logits[..., BOS] = float("-inf")  # never generate the begin token
    return logits.log_softmax(-1)


def sequence_log_likelihood(table, tokens):
    previous, total = BOS, 0.0
    for token in [*tokens, EOS]:
        total += table[previous, token].item()
        previous = token
    return total


def test_greedy_follows_the_argmax_chain():
    tables = random_tables(3, seed=0)
    results = greedy_search(bigram_step(tables), 3, BOS, EOS, max_length=8)
    for item, hyp in enumerate(results):
        expected, previous = [], BOS
        for _ in range(8):
            token = tables[item, previous].argmax().item()
            if token == EOS:
                break
            expected.append(token)
            previous = token
        if len(expected) == 8:  # forced end at max_length
            expected = expected[:7]
        assert hyp.tokens == expected
        assert hyp.log_likelihood == pytest.approx(sequence_log_likelihood(tables[item], expected))


@pytest.mark.parametrize("seed", range(10))
def test_beam_never_scores_worse_than_greedy(seed):
    tables = random_tables(4, seed=seed, sharpness=1.0)
    for length_penalty in (0.0, 1.0):
        greedy = greedy_search(
            bigram_step(tables), 4, BOS, EOS, max_length=6, length_penalty=length_penalty
        )
        beam = beam_search(
            bigram_step(tables),
            4,
            BOS,
            EOS,
            beam_size=3,
            max_length=6,
            length_penalty=length_penalty,
        )
        for g, b in zip(greedy, beam, strict=True):
            assert b.score >= g.score - 1e-6
        if length_penalty == 0.0:  # the score is the log-likelihood itself
            assert all(
                b.log_likelihood >= g.log_likelihood - 1e-6
                for g, b in zip(greedy, beam, strict=True)
            )


def test_wide_beam_finds_the_exhaustive_optimum():
    tables = random_tables(2, seed=3, sharpness=1.0)
    max_length = 4
    beam = beam_search(
        bigram_step(tables), 2, BOS, EOS, beam_size=64, max_length=max_length, length_penalty=0.0
    )
    for item in range(2):
        best = max(
            sequence_log_likelihood(tables[item], list(seq))
            for n in range(max_length)
            for seq in itertools.product(range(2, VOCAB), repeat=n)
        )
        assert beam[item].log_likelihood == pytest.approx(best, abs=1e-5)


def test_no_repeat_ngram_blocks_repeats_and_max_length_holds():
    # a model that loves to repeat "2 3 2 3 ..."
    table = torch.full((VOCAB, VOCAB), -10.0)
    table[BOS, 2] = table[2, 3] = table[3, 2] = 0.0
    table[:, EOS] = -3.0
    tables = table.log_softmax(-1)[None]
    free = beam_search(bigram_step(tables), 1, BOS, EOS, beam_size=2, max_length=10)[0]
    assert len(free.tokens) <= 9
    blocked = beam_search(
        bigram_step(tables), 1, BOS, EOS, beam_size=2, max_length=10, no_repeat_ngram_size=2
    )[0]
    bigrams = list(zip(blocked.tokens, blocked.tokens[1:], strict=False))
    assert len(bigrams) == len(set(bigrams))
    assert free.tokens[:4] == [2, 3, 2, 3]


def test_invalid_beam_size():
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(bigram_step(random_tables(1, 0)), 1, BOS, EOS, beam_size=0)
