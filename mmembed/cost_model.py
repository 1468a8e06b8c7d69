"""Picks how the fused op computes: gather rows into the GEMM ("direct") or project the whole
table once and gather from it ("folded").

Folded wins when the table has fewer rows than the batch has ids (character vocabularies,
class labels): its GEMM is V x D x H instead of N x D x H. The estimate is a roofline, time =
max(flops / peak, bytes / bandwidth), with the H100's balance point; the choice only changes
speed, never the result beyond float rounding.
"""

from __future__ import annotations

# An H100 SXM does ~790 dense bf16 TFLOP/s against ~3 TB/s: ~260 flops per byte moved.
FLOPS_PER_BYTE = 260.0


def _time(flops: float, bytes_moved: float) -> float:
    return max(flops / FLOPS_PER_BYTE, bytes_moved)


def estimate(
    num_ids: int, num_rows: int, dim: int, out_dim: int, item: int = 2
) -> dict[str, float]:
    """Relative forward+backward cost of each strategy (arbitrary units, same scale)."""
    n, v, d, h = num_ids, num_rows, dim, out_dim
    direct = _time(2 * n * d * h, item * (n * d + d * h + n * h))  # forward
    direct += _time(4 * n * d * h, item * (2 * n * h + 2 * n * d + 2 * d * h) + 4 * v * d)
    folded = _time(2 * v * d * h, item * (v * d + d * h + 2 * v * h + 2 * n * h))  # fold + gather
    folded += _time(4 * v * d * h, item * (n * h + v * d + d * h) + 4 * (2 * v * h + 2 * v * d))
    return {"direct": direct, "folded": folded}


def prefer_folded(num_ids, num_rows: int, dim: int, out_dim: int) -> bool:
    """Whether the folded strategy is expected to be faster for this shape.

    ``num_ids`` may be symbolic (a dynamic batch under export); then the direct strategy is
    used, since it is right for every N and adds no guard on N.
    """
    if not isinstance(num_ids, int):
        return False
    cost = estimate(num_ids, num_rows, dim, out_dim)
    return cost["folded"] < cost["direct"]
