"""The Triton path (kernels + the op composing them) against the torch reference.

Without a GPU these run in Triton's CPU interpreter (tests/conftest.py sets TRITON_INTERPRET=1),
on small shapes; `pytest -m gpu` repeats the comparisons on CUDA at real sizes.
"""

import itertools

import pytest
import torch

from conftest import make_pair
from mmembed import SharedEmbedding
from mmembed.kernels import embed_project as K
from mmembed.ops.embed_project import embed_project, reference, uses_kernels
from ops.embed_project.checks import assert_layer_matches_float64

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.bfloat16: dict(rtol=2e-2, atol=5e-2),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
}


def test_kernels_really_run():
    assert uses_kernels(torch.zeros(1, device=DEVICE)), "set TRITON_INTERPRET=1 for CPU runs"


def sample_ids(V, n, seed, padding_idx=None, out_of_range=False):
    """``n`` ids in [0, V): a long run of one id, padding every 7th, and optionally ids outside
    the table (below 0 and at or above V) that the kernels must mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (n,), generator=g)
    ids[: max(1, n // 3)] = ids[0] if n else 0
    if padding_idx is not None:
        ids[1::7] = padding_idx
    if out_of_range and n > 10:
        ids[[2, 5, 9, 10]] = torch.tensor([-1, V, V + 5, -V - 3])
    return ids[:n].to(DEVICE)


def zero_row_reference(ids, table):
    """``table[ids]`` with zero rows for ids outside the table (what every kernel must give)."""
    valid = (ids >= 0) & (ids < table.shape[0])
    rows = table[torch.where(valid, ids, 0)]
    return torch.where(valid[:, None], rows, torch.zeros((), dtype=table.dtype, device=DEVICE))


def sums_reference(x, ids, num_rows):
    """fp32 sums of x's rows per id; out-of-range ids go to row V (the extra row) if present."""
    V = num_rows - 1
    ids = torch.where((ids >= 0) & (ids < V), ids, V)
    out = torch.zeros(num_rows + 1, x.shape[1], device=DEVICE)
    return out.index_add_(0, ids.long(), x.float())[:num_rows]


KERNEL_CASES = list(itertools.product([1, 7, 128], [0, 1, 300], DTYPES))


@pytest.mark.parametrize("V,N,dtype", KERNEL_CASES)
def test_each_kernel_matches_the_reference(V, N, dtype):
    D, H = 24, 40
    g = torch.Generator().manual_seed(V * 1000 + N)
    E = torch.randn(V, D, generator=g).to(DEVICE, dtype)
    W = torch.randn(H, D, generator=g).to(DEVICE, dtype)
    b = torch.randn(H, generator=g).to(DEVICE, dtype)
    ids = sample_ids(V, N, seed=N, padding_idx=0, out_of_range=True)
    rows = zero_row_reference(ids, E)
    valid = (ids >= 0) & (ids < V)

    # gather: exact, the fill row for ids outside the table
    assert torch.equal(K.gather_rows(ids, E), rows)
    T = torch.randn(V, H, generator=g).to(DEVICE, dtype)
    want = torch.where(valid[:, None], zero_row_reference(ids, T), b)
    assert torch.equal(K.gather_rows(ids, T, fill=b), want)

    # gather-fused GEMM: the default tiles, A-stationary over two H tiles, a masked K loop
    want = (rows.float() @ W.float().t() + b.float()).to(dtype)
    configs = [None, dict(BLOCK_N=64, BLOCK_H=32, BLOCK_D=32, GROUP_N=2, H_TILES=2),
               dict(BLOCK_N=64, BLOCK_H=64, BLOCK_D=16, GROUP_N=1, H_TILES=1)]  # fmt: skip
    for config in configs:
        got = K.forward_direct(ids, E, W, b, config=config)
        assert got.dtype == dtype
        torch.testing.assert_close(got, want, **TOL[dtype])

    # reductions by id: one-hot MMA and the sorted segment sum (runs cut into 4-row chunks)
    x = torch.randn(N, H, generator=g).to(DEVICE, dtype)
    masked = K.masked_ids(ids, V)
    sums = sums_reference(x, ids, V + 1)
    torch.testing.assert_close(K.onehot_sum(x, masked, V + 1), sums, rtol=1e-5, atol=1e-4)
    for chunk in (4, 64):
        got = K.segment_sum(x, masked, V + 1, torch.float32, chunk=chunk)
        torch.testing.assert_close(got, sums, rtol=1e-5, atol=1e-4)
    got = K.segment_sum(x, masked, V, dtype, padding_idx=0, chunk=4)  # table dtype, no extra row
    want = sums[:V].clone()
    want[0] = 0
    assert got.dtype == dtype
    torch.testing.assert_close(got, want.to(dtype), **TOL[dtype])


def test_reductions_are_bitwise_repeatable():
    x = torch.randn(300, 40, device=DEVICE)
    ids = K.masked_ids(sample_ids(7, 300, seed=3, out_of_range=True), 7)
    for fn in (lambda: K.onehot_sum(x, ids, 8), lambda: K.segment_sum(x, ids, 8, x.dtype, chunk=4)):
        assert torch.equal(fn(), fn())


LAYER_CASES = list(itertools.product([1, 29], ["direct", "folded"], [None, 0], DTYPES))


@pytest.mark.parametrize("V,strategy,padding_idx,dtype", LAYER_CASES)
def test_layer_forward_backward_match_torch(V, strategy, padding_idx, dtype):
    # V=1 sums by one-hot MMA, V=29 by the segment sum (the CPU cost model's small-class limit)
    torch.manual_seed(1)
    layer = SharedEmbedding(V, 24, out_features=40, padding_idx=padding_idx, backend="triton",
                            strategy=strategy, dtype=dtype, device=DEVICE)  # fmt: skip
    ids = sample_ids(V, 115, seed=2, padding_idx=padding_idx).reshape(5, 23)
    upstream = torch.randn(5, 23, 40, device=DEVICE).to(dtype)
    out = assert_layer_matches_float64(layer, ids, upstream)
    assert out.dtype == dtype and out.shape == (5, 23, 40)


@pytest.mark.parametrize("V", [1, 17])
def test_plain_lookup_without_projection(V):
    layer, emb, _ = make_pair(V, 20, None, padding_idx=0, backend="triton", device=DEVICE)
    emb.to(DEVICE)
    ids = sample_ids(V, 60, seed=3, padding_idx=0)
    torch.testing.assert_close(layer(ids), emb(ids), rtol=0, atol=0)
    layer(ids).pow(2).sum().backward()
    emb(ids).pow(2).sum().backward()
    torch.testing.assert_close(layer.weight.grad, emb.weight.grad)


@pytest.mark.parametrize("strategy", ["direct", "folded"])
def test_backward_is_bitwise_repeatable_in_both_modes(strategy):
    # No float atomics: the fast and the deterministic mode are the same code, and both repeat.
    ids = sample_ids(31, 300, seed=4)
    upstream = torch.randn(300, 48, device=DEVICE)
    runs = []
    for deterministic in (False, True, True):
        torch.manual_seed(0)
        layer = SharedEmbedding(31, 32, out_features=48, backend="triton", strategy=strategy,
                                deterministic=deterministic, device=DEVICE)  # fmt: skip
        torch.use_deterministic_algorithms(deterministic and len(runs) == 2)
        try:
            layer(ids).backward(upstream)
        finally:
            torch.use_deterministic_algorithms(False)
        runs.append([p.grad for p in layer.parameters()])
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other, strict=True))


@pytest.mark.parametrize("strategy", ["direct", "folded"])
def test_unchecked_out_of_range_ids_read_the_zero_row(strategy):
    V, H = 9, 16
    layer = SharedEmbedding(V, 8, out_features=H, backend="triton", strategy=strategy,
                            check_ids=False, device=DEVICE)  # fmt: skip
    ids = sample_ids(V, 40, seed=5, out_of_range=True)
    valid = (ids >= 0) & (ids < V)
    out = layer(ids)
    torch.testing.assert_close(out[~valid], layer.projection.bias.expand(4, H).detach())
    upstream = torch.randn(40, H, device=DEVICE)
    out.backward(upstream)
    # the same as the valid positions alone for the table and W; db counts every position
    ref = SharedEmbedding(V, 8, out_features=H, backend="torch", device=DEVICE)
    ref.load_state_dict(layer.state_dict())
    ref(ids[valid]).backward(upstream[valid])
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.projection.weight.grad, ref.projection.weight.grad,
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    torch.testing.assert_close(layer.projection.bias.grad, upstream.sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("V", [1, 29])
@pytest.mark.parametrize("strategy", ["direct", "folded"])
@pytest.mark.parametrize("out_features", [None, 40])
@pytest.mark.parametrize("check_ids", [True, False])
def test_scale_grad_by_freq_in_the_sum_by_id(V, strategy, out_features, check_ids):
    # one-hot sums (V=1) and segment sums (V=29), against nn.Embedding(scale_grad_by_freq)
    torch.manual_seed(3)
    layer, emb, lin = make_pair(V, 24, out_features, padding_idx=0, scale_grad_by_freq=True,
                                backend="triton", strategy=strategy, check_ids=check_ids,
                                device=DEVICE)  # fmt: skip
    emb.to(DEVICE)
    ids = sample_ids(V, 90, seed=8, padding_idx=0).reshape(3, 30)
    out = layer(ids)
    want = emb(ids) if lin is None else lin.to(DEVICE)(emb(ids))
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    want.backward(upstream)
    torch.testing.assert_close(layer.weight.grad, emb.weight.grad, rtol=1e-5, atol=1e-5)
    if lin is not None:
        torch.testing.assert_close(layer.projection.weight.grad, lin.weight.grad,
                                   rtol=1e-5, atol=1e-5)  # fmt: skip


def test_mixed_precision_table_with_low_precision_projection():
    # What autocast produces: fp32 table rows, bf16 projection.
    torch.manual_seed(0)
    ids = sample_ids(13, 33, seed=6)
    E = torch.randn(13, 16, device=DEVICE)
    W = torch.randn(24, 16, device=DEVICE).bfloat16()
    b = torch.randn(24, device=DEVICE).bfloat16()
    for fold in (False, True):
        got = embed_project(ids, E, W, b, -1, fold, True, False)
        want = reference.embed_project(ids, E, W, b)
        torch.testing.assert_close(got, want, **TOL[torch.bfloat16])


def test_frozen_table_skips_its_gradient():
    layer = SharedEmbedding(10, 16, out_features=16, backend="triton", device=DEVICE).freeze()
    layer(sample_ids(10, 12, seed=7)).sum().backward()
    assert layer.weight.grad is None and layer.projection.weight.grad is not None


@pytest.mark.parametrize("strategy", ["direct", "folded"])
def test_empty_input_forward_and_backward(strategy):
    layer = SharedEmbedding(10, 16, out_features=16, backend="triton", strategy=strategy,
                            device=DEVICE)  # fmt: skip
    out = layer(torch.empty(0, 3, dtype=torch.long, device=DEVICE))
    assert out.shape == (0, 3, 16)
    out.sum().backward()
    assert torch.count_nonzero(layer.weight.grad) == 0
    assert torch.count_nonzero(layer.projection.weight.grad) == 0


def test_backward_op_returns_empty_for_gradients_not_asked():
    ids = sample_ids(7, 9, seed=9)
    E, W = torch.randn(7, 16, device=DEVICE), torch.randn(16, 16, device=DEVICE)
    dE, dW, db = torch.ops.mmembed.embed_project_backward(
        torch.randn(9, 16, device=DEVICE), ids, E, W, True, -1, False, True, False, False, True
    )
    assert dE.numel() == 0 and dW.shape == (16, 16) and db.shape == (16,)
