"""SharedEmbedding's torch path against nn.Embedding + nn.Linear, and its API."""

import pytest
import torch

from conftest import make_pair, run_torch
from mmembed import SharedEmbedding
from ops.embed_project.checks import assert_layer_matches_float64


def grads(*modules):
    return [p.grad for m in modules if m is not None for p in m.parameters()]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("padding_idx", [None, 2])
@pytest.mark.parametrize("out_features", [None, 24])
@pytest.mark.parametrize("strategy", ["auto", "direct", "folded"])
def test_matches_embedding_plus_linear(seed, padding_idx, out_features, strategy):
    g = torch.Generator().manual_seed(seed)
    V, D = (
        int(torch.randint(5, 60, (1,), generator=g)),
        int(torch.randint(1, 40, (1,), generator=g)),
    )
    layer, emb, lin = make_pair(
        V, D, out_features, seed=seed, padding_idx=padding_idx, backend="torch", strategy=strategy
    )
    ids = torch.randint(0, V, (3, 17), generator=g)
    ids[0, :4] = 1  # duplicates
    if padding_idx is not None:
        ids[1, :3] = padding_idx
    got, want = layer(ids), run_torch(emb, lin, ids)
    assert got.shape == (3, 17, out_features or D)
    # exact up to float rounding: folding reorders the sums
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    upstream = torch.randn_like(want)
    got.backward(upstream)
    want.backward(upstream)
    for a, b in zip(grads(layer), [emb.weight.grad] + grads(lin), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if padding_idx is not None:
        assert torch.count_nonzero(layer.weight.grad[padding_idx]) == 0


@pytest.mark.parametrize("strategy", ["direct", "folded"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_is_as_accurate_as_its_rounding(strategy, dtype):
    # bf16/fp16 GEMMs may run in fp32 on this CPU (cost_model.cpu_gemm_dtype): judged against
    # float64, like any low-precision path
    torch.manual_seed(0)
    layer = SharedEmbedding(30, 16, out_features=24, padding_idx=3, backend="torch",
                            strategy=strategy,
                            dtype=dtype)  # fmt: skip
    ids = torch.randint(0, 30, (4, 40))
    ids[0] = 3
    out = assert_layer_matches_float64(layer, ids, torch.randn(4, 40, 24).to(dtype))
    assert out.dtype == dtype


@pytest.mark.parametrize("strategy", ["direct", "folded"])
def test_cpu_backward_is_bitwise_repeatable(strategy):
    torch.manual_seed(0)
    layer = SharedEmbedding(50, 32, out_features=64, backend="torch", strategy=strategy)
    ids = torch.randint(0, 50, (4000,))
    ids[:2000] = 7  # a long run of one id
    upstream = torch.randn(4000, 64)
    runs = []
    for _ in range(2):
        layer.zero_grad(set_to_none=True)
        layer(ids).backward(upstream)
        runs.append([p.grad.clone() for p in layer.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


def test_auto_folds_small_vocabularies_on_cpu():
    assert SharedEmbedding(64, 128, out_features=256).plan(4096).fold
    assert not SharedEmbedding(8000, 256, out_features=256).plan(4096).fold
    assert not SharedEmbedding(64, 128).plan(4096).fold  # a plain lookup has nothing to fold


def test_initialisation_follows_torch():
    layer = SharedEmbedding(1000, 64, out_features=32, padding_idx=0)
    assert torch.count_nonzero(layer.weight[0]) == 0
    assert abs(layer.weight[1:].std().item() - 1.0) < 0.05  # nn.Embedding: N(0, 1)
    bound = 1 / 64**0.5  # nn.Linear: kaiming-uniform, |w| <= 1/sqrt(fan_in)
    assert layer.projection.weight.abs().max() <= bound
    assert layer.projection.bias.abs().max() <= bound
    out = layer(torch.tensor([0]))
    torch.testing.assert_close(out[0], layer.projection.bias)  # padding row outputs the bias


def test_max_norm_renormalises_like_nn_embedding():
    layer, emb, lin = make_pair(20, 8, 6, max_norm=1.5, backend="torch")
    ids = torch.tensor([[1, 2, 3, 3], [7, 1, 0, 19]])
    torch.testing.assert_close(layer(ids), run_torch(emb, lin, ids))
    torch.testing.assert_close(layer.weight, emb.weight)  # same rows renormalised in place
    assert layer.weight[ids.unique()].norm(dim=1).max() <= 1.5 + 1e-5


def test_empty_and_non_contiguous_ids():
    layer, emb, lin = make_pair(10, 4, 6, backend="torch")
    assert layer(torch.empty(0, 5, dtype=torch.long)).shape == (0, 5, 6)
    ids = torch.randint(0, 10, (6, 8)).t()  # non-contiguous view
    assert not ids.is_contiguous()
    torch.testing.assert_close(layer(ids), run_torch(emb, lin, ids), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer(ids.int()), run_torch(emb, lin, ids), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("bad", [10, 11, -1, 1234])
def test_out_of_range_ids_name_the_id(backend, bad):
    layer = SharedEmbedding(10, 4, out_features=6, backend=backend)
    ids = torch.tensor([[1, 2], [3, bad]])
    with pytest.raises(IndexError, match=rf"id {bad} at position \(1, 1\).*10 rows"):
        layer(ids)


def test_out_of_range_checked_before_max_norm_touches_the_table():
    layer = SharedEmbedding(10, 4, max_norm=1.0)
    before = layer.weight.detach().clone()
    with pytest.raises(IndexError, match="id 10 "):
        layer(torch.tensor([0, 10]))
    torch.testing.assert_close(layer.weight, before)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="int32 or int64"):
        SharedEmbedding(10, 4)(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="padding_idx 10"):
        SharedEmbedding(10, 4, padding_idx=10)
    with pytest.raises(ValueError, match="backend"):
        SharedEmbedding(10, 4, backend="cuda")
    with pytest.raises(ValueError, match="strategy"):
        SharedEmbedding(10, 4, strategy="fast")
    with pytest.raises(ValueError, match="width 5"):
        SharedEmbedding(10, 4, out_features=6).logits(torch.randn(2, 5))


def test_negative_padding_idx_is_normalised():
    assert SharedEmbedding(10, 4, padding_idx=-1).padding_idx == 9


def test_from_pretrained_and_freeze_schedule():
    vectors = torch.randn(12, 5)
    layer = SharedEmbedding.from_pretrained(vectors, out_features=7)
    torch.testing.assert_close(layer.weight, vectors)
    assert not layer.weight.requires_grad and layer.projection.weight.requires_grad
    layer(torch.tensor([1, 2])).sum().backward()
    assert layer.weight.grad is None and layer.projection.weight.grad is not None
    layer.unfreeze()
    layer(torch.tensor([1, 2])).sum().backward()
    assert layer.weight.grad is not None
    layer.freeze(projection=True)
    assert not any(p.requires_grad for p in layer.parameters())
    plain = SharedEmbedding.from_pretrained(vectors, freeze=False)
    torch.testing.assert_close(plain(torch.tensor([3])), vectors[3:4])
    with pytest.raises(ValueError, match="2-D"):
        SharedEmbedding.from_pretrained(torch.randn(3))


def test_tied_logits_equal_scores_against_projected_rows():
    torch.manual_seed(0)
    layer = SharedEmbedding(15, 6, out_features=10)
    hidden = torch.randn(2, 3, 10, requires_grad=True)
    logits = layer.logits(hidden)
    assert logits.shape == (2, 3, 15)
    table = layer(torch.arange(15))  # every row as the forward projects it
    torch.testing.assert_close(logits, hidden @ table.t(), rtol=1e-5, atol=1e-5)
    logits.logsumexp(-1).sum().backward()
    assert layer.weight.grad.abs().sum() > 0 and layer.projection.weight.grad.abs().sum() > 0
    plain = SharedEmbedding(15, 6)
    torch.testing.assert_close(plain.logits(torch.eye(6)), plain.weight.t())


def test_folded_table_is_equivalent():
    torch.manual_seed(0)
    layer = SharedEmbedding(25, 8, out_features=12, padding_idx=3, max_norm=2.0)
    ids = torch.randint(0, 25, (4, 9))
    folded = layer.folded()
    assert isinstance(folded, torch.nn.Embedding) and not folded.weight.requires_grad
    assert folded.padding_idx == 3
    torch.testing.assert_close(folded(ids), layer(ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", ["direct", "folded"])
def test_strategies_agree_on_the_torch_reference(strategy):
    layer, emb, lin = make_pair(9, 8, 16, backend="triton", strategy=strategy)
    ids = torch.randint(0, 9, (50,))
    torch.testing.assert_close(layer(ids), run_torch(emb, lin, ids), rtol=1e-5, atol=1e-5)


def test_real_glove_vectors_through_the_layer():
    from mmembed.pretrained import load_glove_6b_50d

    vocab = ["king", "queen", "man", "woman", "paris", "france", "banana", "apple", "zzqxnotaword"]
    vectors = load_glove_6b_50d(vocab)
    assert vectors.missing == ["zzqxnotaword"]
    layer = SharedEmbedding.from_pretrained(vectors.weight)
    rows = torch.nn.functional.normalize(layer(torch.arange(len(vocab) - 1)), dim=-1)
    scores = rows @ rows[0]
    scores[0] = -1
    top2 = {vocab[i] for i in scores.topk(2).indices.tolist()}
    assert "queen" in top2
    # king - man + woman lands nearest to queen among the other words
    analogy = rows[0] - rows[2] + rows[3]
    candidates = [1, 4, 5, 6, 7]
    best = max(candidates, key=lambda i: float(analogy @ rows[i]))
    assert vocab[best] == "queen"


def test_from_word_vectors_file(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("the 0.1 0.2 0.3\ncat 1.0 2.0 3.0\n")
    layer = SharedEmbedding.from_word_vectors(path, ["<pad>", "cat", "the"], out_features=4)
    torch.testing.assert_close(layer.weight[1], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(layer.weight[2], torch.tensor([0.1, 0.2, 0.3]))
    assert layer.pretrained.missing == ["<pad>"] and not layer.weight.requires_grad
    assert layer(torch.tensor([1, 2])).shape == (2, 4)
