"""PyTorch's own ``nn.Embedding`` tests (test/nn/test_embedding.py, the CPU ones), restated for
``SharedEmbedding`` as a drop-in: positional arguments, ``from_pretrained``, integer and empty
tables, ``max_norm`` (forward-mode AD included), ``scale_grad_by_freq``, ``sparse``, exception
types, attributes and repr. Each runs the same calls on both layers and compares."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp

from mmembed import SharedEmbedding

INT_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]


def test_positional_arguments_mean_what_they_mean_in_nn_embedding():
    w = torch.randn(10, 3)
    args = (10, 3, 2, 1.5, 1.0, True, False, w, True, "cpu", torch.float32)
    ours, theirs = SharedEmbedding(*args), nn.Embedding(*args)
    for name in ("num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type",
                 "scale_grad_by_freq", "sparse"):  # fmt: skip
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.projection is None and ours.out_features is None
    assert ours.weight.data_ptr() == w.data_ptr() and not ours.weight.requires_grad
    with pytest.raises(TypeError):  # out_features is keyword-only
        SharedEmbedding(*args, 4)
    assert SharedEmbedding(10, 3, 2).padding_idx == 2  # not a projection to width 2
    frozen = SharedEmbedding(10, 3, _freeze=True)  # torch: _freeze without _weight freezes too
    assert not frozen.weight.requires_grad
    assert not nn.Embedding(10, 3, _freeze=True).weight.requires_grad


def test_from_pretrained_positional_arguments_follow_torch():
    w = torch.randn(6, 4) * 3
    ours = SharedEmbedding.from_pretrained(w.clone(), True, 1, 2.0, 1.0, True, False)
    theirs = nn.Embedding.from_pretrained(w.clone(), True, 1, 2.0, 1.0, True, False)
    assert (ours.padding_idx, ours.max_norm, ours.norm_type) == (1, 2.0, 1.0)
    assert ours.scale_grad_by_freq and ours.out_features is None
    ids = torch.tensor([[0, 1, 5], [5, 2, 1]])
    torch.testing.assert_close(ours(ids), theirs(ids))
    torch.testing.assert_close(ours.weight, theirs.weight)


def test_from_pretrained_shares_storage_and_max_norm_reaches_the_callers_tensor():
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    layer = SharedEmbedding.from_pretrained(a, max_norm=1.0, norm_type=2.0)
    assert layer.weight.data_ptr() == a.data_ptr()
    out = layer(torch.tensor([0, 1]))
    torch.testing.assert_close(a, layer.weight.data)  # renormalised in place, in the caller's
    assert a.norm(dim=1).max() <= 1.0 + 1e-6
    torch.testing.assert_close(out, a)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_integer_tables_are_accepted_frozen(dtype):
    table = torch.arange(12).reshape(4, 3).to(dtype)
    ours = SharedEmbedding.from_pretrained(table, freeze=False)  # torch freezes them anyway
    assert not ours.weight.requires_grad and ours.weight.dtype == dtype
    ids = torch.tensor([[3, 0], [1, 1]])
    assert torch.equal(ours(ids), nn.Embedding.from_pretrained(table)(ids))
    projected = SharedEmbedding.from_pretrained(table, out_features=5)
    out = projected(ids)
    assert out.dtype == torch.get_default_dtype()
    want = F.linear(table[ids].float(), projected.projection.weight, projected.projection.bias)
    torch.testing.assert_close(out, want)
    out.sum().backward()  # trains the projection, the integer table stays out of autograd
    assert projected.projection.weight.grad is not None and projected.weight.grad is None


def test_padding_idx_zero_row_no_gradient_negative_index_and_bounds():
    for padding_idx, row in ((0, 0), (-2, 8)):
        ours = SharedEmbedding(10, 20, padding_idx=padding_idx)
        assert ours.padding_idx == row
        assert torch.count_nonzero(ours.weight[row]) == 0
        ids = torch.tensor([[row, row, 2], [3, 4, row]])
        ours(ids).sum().backward()
        assert torch.count_nonzero(ours.weight.grad[row]) == 0
        assert ours.weight.grad[2].abs().sum() > 0
    for bad in (25, -25, 10, -11):
        with pytest.raises(AssertionError, match="padding_idx"):  # torch's type
            SharedEmbedding(num_embeddings=10, embedding_dim=20, padding_idx=bad)
        with pytest.raises(ValueError, match="padding_idx"):  # and the clearer one
            SharedEmbedding(10, 20, padding_idx=bad)


def test_from_pretrained_padding_row_keeps_its_values_and_gets_no_gradient():
    w = torch.randn(5, 3)
    ours = SharedEmbedding.from_pretrained(w.clone(), freeze=False, padding_idx=2)
    theirs = nn.Embedding.from_pretrained(w.clone(), freeze=False, padding_idx=2)
    ids = torch.tensor([2, 2, 0, 4])
    torch.testing.assert_close(ours(ids), theirs(ids))
    ours(ids).sum().backward()
    theirs(ids).sum().backward()
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
    assert torch.count_nonzero(ours.weight.grad[2]) == 0


@pytest.mark.parametrize("out_features", [None, 6])
def test_max_norm_with_unsorted_repeating_ids_and_backward(out_features):
    torch.manual_seed(0)
    w = torch.randn(20, 4) * 5
    ours = SharedEmbedding(20, 4, max_norm=1.0, _weight=w.clone(), out_features=out_features)
    theirs = nn.Embedding(20, 4, max_norm=1.0, _weight=w.clone())
    ids = torch.tensor([[7, 1, 7, 19], [0, 1, 1, 7]])
    want = theirs(ids)
    if out_features is not None:
        want = ours.projection(want)
    got = ours(ids)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(ours.weight, theirs.weight)
    assert ours.weight[ids.unique()].norm(dim=1).max() <= 1.0 + 1e-5
    upstream = torch.randn_like(got)
    got.backward(upstream)
    want.backward(upstream)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)


def test_max_norm_keeps_forward_mode_ad_working():
    # torch renormalises weight.detach(), so jvp through the lookup still sees the tangent
    weight = torch.randn(4, 4) * 2
    tangent = torch.ones(4, 4)
    ids = torch.tensor([[0, 1], [2, 2]])
    layer = SharedEmbedding(4, 4, max_norm=1.0)

    def lookup(w):
        return functional_call(layer, {"weight": w}, (ids,))

    _, out_tangent = jvp(lookup, (weight,), (tangent,))
    torch.testing.assert_close(out_tangent, torch.ones(2, 2, 4))
    jacobian = torch.func.jacfwd(lookup)(torch.randn(4, 4))
    assert jacobian.shape == (2, 2, 4, 4, 4)


@pytest.mark.parametrize("shape", [(0, 0), (10, 0), (0, 3)])
def test_zero_size_tables_work_as_in_torch(shape):
    ours, theirs = SharedEmbedding(*shape), nn.Embedding(*shape)
    assert ours.weight.shape == theirs.weight.shape == shape
    ids = torch.tensor([[1, 2]]) if shape[0] else torch.empty(2, 0, dtype=torch.long)
    got, want = ours(ids), theirs(ids)
    assert got.shape == want.shape
    got.sum().backward()
    assert ours.weight.grad.shape == shape
    if shape[0] == 0:  # any id is outside an empty table
        with pytest.raises(IndexError):
            ours(torch.tensor([0]))
    projected = SharedEmbedding(*shape, out_features=3)
    out = projected(ids)
    assert out.shape == (*ids.shape, 3)
    torch.testing.assert_close(out, projected.projection.bias.expand_as(out))


def test_bad_arguments_raise_torch_exception_types():
    layer = SharedEmbedding(10, 3)
    with pytest.raises(RuntimeError, match="int32 or int64"):
        layer(torch.tensor([1.0]))
    with pytest.raises(TypeError, match="int32 or int64"):
        layer(torch.tensor([1.0]))
    with pytest.raises(IndexError):
        layer(torch.tensor([10]))
    with pytest.raises(RuntimeError, match="non-negative"):
        SharedEmbedding(-1, 3)
    with pytest.raises(AssertionError, match="shape"):
        SharedEmbedding(10, 3, _weight=torch.randn(3, 10))
    with pytest.raises(AssertionError, match="2-D"):
        SharedEmbedding.from_pretrained(torch.randn(4))
    with pytest.raises(TypeError, match="embedding_dim"):
        SharedEmbedding(10, 3.0)


@pytest.mark.parametrize("strategy", ["direct", "folded"])
@pytest.mark.parametrize("out_features", [None, 5])
@pytest.mark.parametrize("padding_idx", [None, 1])
@pytest.mark.parametrize("check_ids", [True, False])
def test_scale_grad_by_freq_matches_torch(strategy, out_features, padding_idx, check_ids):
    torch.manual_seed(0)
    w = torch.randn(9, 4)
    ours = SharedEmbedding(9, 4, padding_idx, None, 2.0, True, _weight=w.clone(),
                           out_features=out_features, strategy=strategy, check_ids=check_ids)
    theirs = nn.Embedding(9, 4, padding_idx, None, 2.0, True, _weight=w.clone())
    ids = torch.tensor([[1, 1, 1, 3], [3, 8, 0, 1]])  # counts 4, 2, 1, 1
    want = theirs(ids)
    if out_features is not None:
        proj = [p.detach() for p in ours.projection.parameters()]
        want = F.linear(want, *proj)
    got = ours(ids)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    upstream = torch.randn_like(got)
    got.backward(upstream)
    want.backward(upstream)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-5, atol=1e-6)
    if out_features is not None:  # dW is not scaled
        rows = F.embedding(ids, w).reshape(-1, 4)
        d_proj = upstream.reshape(-1, out_features).t() @ rows
        torch.testing.assert_close(ours.projection.weight.grad, d_proj, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("out_features", [None, 5])
def test_sparse_gradients_match_dense_ones_and_train_with_sgd(out_features):
    torch.manual_seed(0)
    w = torch.randn(30, 4)
    ours = SharedEmbedding(30, 4, sparse=True, _weight=w.clone(), out_features=out_features)
    ids = torch.tensor([[1, 2, 4, 5], [4, 3, 2, 9]])
    upstream = torch.randn(2, 4, out_features or 4)
    ours(ids).backward(upstream)
    grad = ours.weight.grad
    assert grad.is_sparse
    dense = SharedEmbedding(30, 4, _weight=w.clone(), out_features=out_features)
    if out_features is not None:
        dense.projection.load_state_dict(ours.projection.state_dict())
    dense(ids).backward(upstream)
    torch.testing.assert_close(grad.to_dense(), dense.weight.grad)
    before = ours.weight.detach().clone()
    torch.optim.SGD([ours.weight], lr=0.1).step()
    torch.testing.assert_close(ours.weight, before - 0.1 * dense.weight.grad)
    ours.zero_grad()
    ours(ids).sum().backward()
    torch.optim.SparseAdam([ours.weight], lr=0.01).step()  # needs a sparse gradient
    assert not torch.equal(ours.weight[1], before[1] - 0.1 * dense.weight.grad[1])


def test_sparse_empty_ids_give_an_empty_sparse_gradient():
    layer = SharedEmbedding(10, 3, sparse=True)
    theirs = nn.Embedding(10, 3, sparse=True)
    ids = torch.empty(0, 2, dtype=torch.long)
    layer(ids).sum().backward()
    theirs(ids).sum().backward()
    assert layer.weight.grad.is_sparse and layer.weight.grad._nnz() == theirs.weight.grad._nnz()
    assert layer.weight.grad.shape == (10, 3)


def test_gradcheck_in_float64_with_multi_dimensional_ids():
    layer = SharedEmbedding(6, 3, out_features=2, dtype=torch.float64)
    ids = torch.tensor([[[0, 2], [5, 5]], [[1, 3], [2, 0]]])

    def lookup(w):
        return functional_call(layer, {"weight": w}, (ids,))

    weight = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lookup, (weight,))
    assert layer(ids).shape == (2, 2, 2, 2)


def test_state_dicts_interchange_with_nn_embedding():
    theirs = nn.Embedding(7, 3, padding_idx=0)
    ours = SharedEmbedding(7, 3, padding_idx=0)
    ours.load_state_dict(theirs.state_dict())
    ids = torch.tensor([0, 6, 3])
    torch.testing.assert_close(ours(ids), theirs(ids))
    theirs.load_state_dict(copy.deepcopy(ours).state_dict())


def test_attributes_and_repr_show_every_non_default_option():
    layer = SharedEmbedding(10, 3, 0, 1.5, 1.0, True, True)
    assert layer.sparse and layer.scale_grad_by_freq
    text = repr(layer)
    for part in ("10, 3", "padding_idx=0", "max_norm=1.5", "norm_type=1.0",
                 "scale_grad_by_freq=True", "sparse=True"):  # fmt: skip
        assert part in text, text
    assert repr(SharedEmbedding(10, 3)) == "SharedEmbedding(10, 3)"
    assert "norm_type" in repr(SharedEmbedding(10, 3, norm_type=3.0))
    projected = repr(SharedEmbedding(10, 3, out_features=4, bias=False, backend="torch"))
    assert "out_features=4, bias=False, backend='torch'" in projected
