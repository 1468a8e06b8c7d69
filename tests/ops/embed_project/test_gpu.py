"""CUDA-only checks of the Triton path at realistic sizes: `pytest -m gpu` on a GPU machine.

CI has no GPU and deselects these (`-m "not gpu"`); they fail, not skip, without CUDA. The
interpreter-sized versions of the same comparisons run everywhere in test_kernels.py
(which also runs its cases on CUDA when one is present).
"""

import itertools

import pytest
import torch
import torch.nn.functional as F

from mmembed import SharedEmbedding

pytestmark = pytest.mark.gpu
TOL = {
    torch.float32: dict(rtol=1e-4, atol=1e-3),
    torch.bfloat16: dict(rtol=3e-2, atol=1e-1),
    torch.float16: dict(rtol=1e-2, atol=5e-2),
}


def reference_grads(layer, ids, upstream):
    E = layer.weight.detach().clone().requires_grad_()
    W = layer.projection.weight.detach().clone().requires_grad_()
    b = layer.projection.bias.detach().clone().requires_grad_()
    out = F.linear(F.embedding(ids, E, layer.padding_idx), W, b)
    out.backward(upstream)
    return out, [E.grad, W.grad, b.grad]


@pytest.mark.parametrize(
    "strategy,deterministic,dtype",
    list(itertools.product(["direct", "folded"], [False, True], list(TOL))),
)
def test_cuda_matches_torch(strategy, deterministic, dtype):
    torch.manual_seed(0)
    V, D, H, N = 3000, 192, 320, 5000
    layer = SharedEmbedding(V, D, H, padding_idx=7, strategy=strategy, deterministic=deterministic,
                            device="cuda", dtype=dtype)  # fmt: skip
    ids = torch.randint(0, V, (N,), device="cuda")
    ids[: N // 3] = 11  # heavy duplicate run
    ids[N // 3 :: 13] = 7
    upstream = torch.randn(N, H, device="cuda", dtype=dtype)
    out = layer(ids)
    out.backward(upstream)
    want, want_grads = reference_grads(layer, ids, upstream)
    torch.testing.assert_close(out, want, **TOL[dtype])
    scale = [g.abs().max().item() for g in want_grads]
    for got, ref, s in zip([p.grad for p in layer.parameters()], want_grads, scale, strict=True):
        torch.testing.assert_close(got / s, ref / s, **TOL[dtype])
    assert torch.count_nonzero(layer.weight.grad[7]) == 0


def test_cuda_deterministic_backward_is_bitwise_repeatable():
    torch.manual_seed(0)
    layer = SharedEmbedding(500, 256, 512, deterministic=True, device="cuda", dtype=torch.bfloat16)
    ids = torch.randint(0, 20, (65536,), device="cuda")  # few ids, long runs: atomics would race
    upstream = torch.randn(65536, 512, device="cuda", dtype=torch.bfloat16)
    results = []
    for _ in range(3):
        layer.zero_grad(set_to_none=True)
        layer(ids).backward(upstream)
        results.append([p.grad.clone() for p in layer.parameters()])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))


def test_cuda_bad_ids_raise_before_any_kernel():
    layer = SharedEmbedding(100, 64, 64, device="cuda")
    for bad in (100, -1):
        ids = torch.tensor([[1, 2, 3], [4, bad, 5]], device="cuda")
        with pytest.raises(IndexError, match=rf"id {bad} at position \(1, 1\).*100 rows"):
            layer(ids)
    torch.cuda.synchronize()  # the context is healthy: nothing read out of bounds


def test_compile_keeps_the_triton_kernels():
    from torch._inductor.utils import run_and_get_code

    layer = SharedEmbedding(1000, 128, 256, device="cuda", dtype=torch.bfloat16, check_ids=False)
    ids = torch.randint(0, 1000, (4, 512), device="cuda")
    compiled = torch.compile(layer, fullgraph=True)
    out, code = run_and_get_code(compiled, ids)
    torch.testing.assert_close(out, layer(ids), **TOL[torch.bfloat16])
    assert any("_forward_direct_kernel" in c for c in code)


@pytest.mark.xfail(
    run=False,
    reason="aoti_load_package segfaults on a package holding triton_op kernels (torch 2.11, "
    "H100, 2026-11-27); kept as the acceptance check for the kernel-tuning issue",
)
def test_aot_inductor_package_runs_the_kernels(tmp_path):
    layer = SharedEmbedding(1000, 128, 256, device="cuda", dtype=torch.bfloat16).eval()
    ids = torch.randint(0, 1000, (4, 64), device="cuda")
    program = torch.export.export(layer, (ids,))
    path = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "m.pt2"))
    runner = torch._inductor.aoti_load_package(path)
    torch.testing.assert_close(runner(ids), layer(ids), **TOL[torch.bfloat16])
