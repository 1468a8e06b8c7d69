"""Comparisons the op's tests share: the layer against nn.Embedding + nn.Linear run in float64
on the same parameters, with tolerances relative to each tensor's largest entry (low-precision
paths are then judged on their own rounding, not on the rounding of a bf16 baseline)."""

import torch
import torch.nn.functional as F

RELATIVE_TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
    torch.float16: dict(rtol=5e-3, atol=5e-3),
}


def float64_reference(layer, ids, upstream):
    """``(output, [dE, dW, db])`` of ``F.linear(F.embedding(ids, E), W, b)`` in float64."""
    params = [p.detach().double().requires_grad_() for p in layer.parameters()]
    E, *proj = params
    out = F.embedding(ids.long(), E, layer.padding_idx)
    if proj:
        out = F.linear(out, *proj)
    out.backward(upstream.double())
    return out, [p.grad for p in params]


def assert_close_relative(got, want, dtype):
    scale = want.abs().max().clamp_min(1e-6)
    torch.testing.assert_close(got.double() / scale, want / scale, **RELATIVE_TOL[dtype])


def assert_layer_matches_float64(layer, ids, upstream):
    """Run the layer forward and backward on ``ids`` and compare output and every gradient."""
    out = layer(ids)
    out.backward(upstream)
    want, grads = float64_reference(layer, ids, upstream)
    dtype = out.dtype
    assert_close_relative(out, want, dtype)
    for p, g in zip(layer.parameters(), grads, strict=True):
        assert p.grad.dtype == p.dtype
        assert_close_relative(p.grad, g, dtype)
    if layer.padding_idx is not None:
        assert torch.count_nonzero(layer.weight.grad[layer.padding_idx]) == 0
    return out
