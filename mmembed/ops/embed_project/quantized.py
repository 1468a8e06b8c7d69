"""Quantised tables for inference (Keras 3's int8/int4 ``Embedding.quantize``): symmetric
per-row scales, and ``mmembed::quantized_rows``, the gather that dequantises rows as it reads
them (the Triton kernel :func:`mmembed.kernels.embed_project.gather_quantized_rows` on CUDA and
under the interpreter, the torch reference elsewhere and when traced). No full-precision copy of
the table is ever made; exported graphs and ONNX keep the int8 / packed-int4 table.

Layout: int8 tables are (V, D) int8 with ``q = round(x / s)``, ``s = max|row| / 127``; int4
tables are (V, ceil(D / 2)) uint8, two values a byte (the even column in the low nibble), each
stored as ``q + 8`` with ``q`` in [-7, 7] and ``s = max|row| / 7``. Scales are (V,) in the
dtype rows come out in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmembed.kernels import embed_project as kernels
from mmembed.ops.embed_project.op import uses_kernels

LEVELS = {"int8": 127, "int4": 7}


def quantize_rows(table: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scales)`` of a float table (V, D) for ``mode`` "int8" or "int4"."""
    levels = LEVELS[mode]
    x = table.detach().float()
    scales = x.abs().amax(dim=1) / levels
    safe = torch.where(scales > 0, scales, 1.0)[:, None]  # all-zero rows: q = 0, scale 0
    q = torch.round(x / safe).clamp_(-levels, levels).to(torch.int8)
    if mode == "int4":
        q = q + 8  # 1..15 in a nibble
        if q.shape[1] % 2:
            q = F.pad(q, (0, 1), value=8)
        q = q.to(torch.uint8)
        q = q[:, 0::2] | (q[:, 1::2] << 4)
    return q.contiguous(), scales.to(table.dtype)


def table_bytes(q: torch.Tensor, scales: torch.Tensor) -> int:
    return q.numel() * q.element_size() + scales.numel() * scales.element_size()


def reference_rows(ids: torch.Tensor, q: torch.Tensor, scales: torch.Tensor, dim: int):
    """``q[ids] * scales[ids]`` in torch ops (``F.embedding`` gathers the int rows; ONNX keeps
    them int: ``Gather`` on the int8/uint8 table, then ``Cast`` and ``Mul``)."""
    rows = F.embedding(ids, q)
    if q.dtype == torch.uint8:  # unpack the nibbles: (..., D/2) -> (..., D)
        # by integer division, not bit ops: ONNX's BitShift takes unsigned types only
        rows = rows.to(torch.int32)
        high = torch.div(rows, 16, rounding_mode="floor")
        rows = torch.stack([rows - 16 * high, high], dim=-1).flatten(-2)[..., :dim] - 8
    return rows.to(scales.dtype) * F.embedding(ids, scales[:, None])


@torch.library.triton_op("mmembed::quantized_rows", mutates_args={})
def quantized_rows(ids: torch.Tensor, q: torch.Tensor, scales: torch.Tensor, dim: int,
                   kernels_ok: bool) -> torch.Tensor:  # fmt: skip
    """(N, dim) rows of a quantised table for 1-D ``ids``, dequantised in the gather."""
    if kernels_ok and uses_kernels(ids):
        return kernels.gather_quantized_rows(ids.contiguous(), q, scales, dim, scales.dtype)
    return reference_rows(ids, q, scales, dim)


def _decomposition(ids, q, scales, dim, _kernels_ok):
    return reference_rows(ids, q, scales, dim)


def decomposition_table() -> dict:
    """``run_decompositions`` entry lowering the gather to torch ops for ONNX."""
    return {quantized_rows._opoverload: _decomposition}
