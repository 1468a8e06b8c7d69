"""The Triton path (kernels + autograd wrapper) against the torch reference.

Without a GPU these run in Triton's CPU interpreter (tests/conftest.py sets TRITON_INTERPRET=1),
on small shapes; `pytest -m gpu` repeats the comparison on CUDA at real sizes.
"""

import itertools

import pytest
import torch

from conftest import make_pair, run_torch
from mmembed import SharedEmbedding
from mmembed.kernels import embed_project as K
from mmembed.ops.embed_project import embed_project, reference, uses_kernels

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.bfloat16: dict(rtol=2e-2, atol=5e-2),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
}


def test_kernels_really_run():
    assert uses_kernels(torch.zeros(1, device=DEVICE)), "set TRITON_INTERPRET=1 for CPU runs"


def sample_ids(V, shape, seed, padding_idx=None):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, shape, generator=g)
    flat = ids.view(-1)
    flat[: max(1, flat.numel() // 4)] = flat[0]  # a long run of one id
    if padding_idx is not None:
        flat[1::7] = padding_idx
    return ids.to(DEVICE)


CASES = list(
    itertools.product(
        ["direct", "folded"],
        [False, True],
        [None, 0],
        [torch.float32, torch.bfloat16, torch.float16],
    )
)


@pytest.mark.parametrize("strategy,deterministic,padding_idx,dtype", CASES)
def test_forward_backward_match_torch(strategy, deterministic, padding_idx, dtype):
    V, D, H = 29, 24, 40
    layer, emb, lin = make_pair(
        V, D, H, seed=1, padding_idx=padding_idx, backend="triton", strategy=strategy,
        deterministic=deterministic, dtype=dtype, device=DEVICE,
    )  # fmt: skip
    emb.to(DEVICE), lin.to(DEVICE)
    ids = sample_ids(V, (5, 23), seed=2, padding_idx=padding_idx)
    got, want = layer(ids), run_torch(emb, lin, ids)
    assert got.dtype == dtype and got.shape == (5, 23, H)
    torch.testing.assert_close(got, want, **TOL[dtype])
    upstream = torch.randn(want.shape, device=DEVICE).to(dtype)
    got.backward(upstream)
    want.backward(upstream)
    torch.testing.assert_close(layer.weight.grad, emb.weight.grad, **TOL[dtype])
    torch.testing.assert_close(layer.projection.weight.grad, lin.weight.grad, **TOL[dtype])
    torch.testing.assert_close(layer.projection.bias.grad, lin.bias.grad, **TOL[dtype])
    if padding_idx is not None:
        assert torch.count_nonzero(layer.weight.grad[padding_idx]) == 0


@pytest.mark.parametrize("deterministic", [False, True])
def test_plain_lookup_without_projection(deterministic):
    layer, emb, _ = make_pair(
        17, 20, None, padding_idx=3, backend="triton", deterministic=deterministic, device=DEVICE
    )
    emb.to(DEVICE)
    ids = sample_ids(17, (60,), seed=3, padding_idx=3)
    torch.testing.assert_close(layer(ids), emb(ids), rtol=0, atol=0)
    layer(ids).pow(2).sum().backward()
    emb(ids).pow(2).sum().backward()
    torch.testing.assert_close(layer.weight.grad, emb.weight.grad)


@pytest.mark.parametrize("strategy", ["direct", "folded"])
def test_deterministic_backward_is_bitwise_repeatable(strategy):
    layer = SharedEmbedding(
        31, 32, 48, backend="triton", strategy=strategy, deterministic=True, device=DEVICE
    )
    ids = sample_ids(31, (300,), seed=4)
    upstream = torch.randn(300, 48, device=DEVICE)
    runs = []
    for _ in range(3):
        layer.zero_grad(set_to_none=True)
        layer(ids).backward(upstream)
        runs.append([p.grad.clone() for p in layer.parameters()])
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            assert torch.equal(a, b)


def test_global_deterministic_flag_switches_mode(monkeypatch):
    calls = []
    original = K.segment_sum_rows
    monkeypatch.setattr(K, "segment_sum_rows", lambda *a, **k: calls.append(1) or original(*a, **k))
    layer = SharedEmbedding(11, 16, 16, backend="triton", strategy="direct", device=DEVICE)
    torch.use_deterministic_algorithms(True)
    try:
        layer(sample_ids(11, (20,), seed=5)).sum().backward()
    finally:
        torch.use_deterministic_algorithms(False)
    assert calls, "torch.use_deterministic_algorithms(True) must select the sorted reduction"


def test_mixed_precision_table_with_low_precision_projection():
    # What autocast produces: fp32 table rows, bf16 projection.
    torch.manual_seed(0)
    ids = sample_ids(13, (33,), seed=6)
    E = torch.randn(13, 16, device=DEVICE)
    W = torch.randn(24, 16, device=DEVICE).bfloat16()
    b = torch.randn(24, device=DEVICE).bfloat16()
    got = embed_project(ids, E, W, b, -1, False, False, True)
    torch.testing.assert_close(got, reference.embed_project(ids, E, W, b), **TOL[torch.bfloat16])


def test_frozen_table_skips_its_gradient():
    layer = SharedEmbedding(10, 16, 16, backend="triton", device=DEVICE).freeze()
    layer(sample_ids(10, (12,), seed=7)).sum().backward()
    assert layer.weight.grad is None and layer.projection.weight.grad is not None


def test_empty_input_forward_and_backward():
    layer = SharedEmbedding(10, 16, 16, backend="triton", device=DEVICE)
    out = layer(torch.empty(0, 3, dtype=torch.long, device=DEVICE))
    assert out.shape == (0, 3, 16)
    out.sum().backward()
    assert torch.count_nonzero(layer.weight.grad) == 0


def test_kernels_mask_out_of_range_ids_when_the_check_is_off():
    # check_ids=False must never let a kernel read or write outside the table.
    E = torch.randn(8, 16, device=DEVICE)
    W = torch.randn(16, 16, device=DEVICE)
    ids = torch.tensor([1, 8, -3, 10**6, 2], device=DEVICE)
    y = K.forward_direct(ids, E, W, None)
    torch.testing.assert_close(y[[0, 4]], E[[1, 2]] @ W.t(), rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(y[1:4]) == 0
    assert torch.count_nonzero(K.gather_rows(ids, E)[1:4]) == 0
    de = K.table_grad_atomic(torch.ones(5, 16, device=DEVICE), ids, W, 8, -1)
    assert de.shape == (8, 16) and torch.count_nonzero(de[[0, 3, 4, 5, 6, 7]]) == 0
    out = K.scatter_add_rows(torch.ones(5, 16, device=DEVICE), ids, 8)
    assert out.sum() == 2 * 16


def test_kernel_building_blocks_match_torch():
    torch.manual_seed(0)
    V, D, H, N = 19, 24, 20, 70
    ids = sample_ids(V, (N,), seed=8)
    E, W = torch.randn(V, D, device=DEVICE), torch.randn(H, D, device=DEVICE)
    dy = torch.randn(N, H, device=DEVICE)
    dw, db = K.projection_weight_grad(dy, ids, E, True)
    torch.testing.assert_close(dw, dy.t() @ E[ids], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(db, dy.sum(0), rtol=1e-5, atol=1e-5)
    dense = torch.zeros(V, H, device=DEVICE).index_add_(0, ids, dy)
    sorted_ids, order, seg_end = K.sort_ids(ids)
    seg = K.segment_sum_rows(dy, sorted_ids, order, seg_end, V, dense=True)
    torch.testing.assert_close(seg, dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(K.scatter_add_rows(dy, ids, V), dense, rtol=1e-5, atol=1e-5)
    runs = K.segment_sum_rows(dy, sorted_ids, order, seg_end, V, dense=False)
    de = K.table_grad_from_segments(runs, sorted_ids, W, V, -1, torch.float32)
    torch.testing.assert_close(de, dense @ W, rtol=1e-4, atol=1e-4)


def test_backward_op_returns_empty_for_gradients_not_asked():
    ids = sample_ids(7, (9,), seed=9)
    E, W = torch.randn(7, 16, device=DEVICE), torch.randn(16, 16, device=DEVICE)
    dE, dW, db = torch.ops.mmembed.embed_project_backward(
        torch.randn(9, 16, device=DEVICE), ids, E, W, True, -1, False, False, False, True
    )
    assert dE.numel() == 0 and dW.shape == (16, 16) and db.shape == (16,)
