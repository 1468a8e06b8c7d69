"""Cost model of the fused embedding-projection: picks how the op computes, and the roofline
limits the benchmark reports against.

Strategies: gather rows into the GEMM ("direct"), or project the whole table once and gather
from it ("folded"). Folded wins when the table has fewer rows than the batch has ids (character
vocabularies, class labels): its GEMM is V x D x H instead of N x D x H. The estimate is a
roofline, time = max(flops / peak, bytes / bandwidth), with the figures of the device the op
runs on (:data:`DEVICES`); the choice only changes speed, never the result beyond rounding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceSpec:
    """Dense peak FLOP/s per dtype and copy bandwidth (bytes/s) of one device kind."""

    name: str
    peak_flops: dict[str, float]
    bandwidth: float

    @property
    def flops_per_byte(self) -> float:
        """The balance point: a kernel doing fewer FLOPs per byte moved is bandwidth-bound."""
        return self.peak_flops["bf16"] / self.bandwidth


# Matched as substrings of torch.cuda.get_device_name(), most specific first. Bandwidths are
# measured copy rates (anchors.md), not the datasheet's.
DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec("H200", {"bf16": 790e12, "fp16": 790e12, "fp32": 60e12}, 4.0e12),
    DeviceSpec("H100", {"bf16": 790e12, "fp16": 790e12, "fp32": 60e12}, 3.0e12),
    DeviceSpec("A100", {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12}, 1.7e12),
    DeviceSpec("L4", {"bf16": 121e12, "fp16": 121e12, "fp32": 30e12}, 0.25e12),
)
# Unknown GPUs are costed like an H100: only the balance point matters for the strategy.
DEFAULT_DEVICE = DEVICES[1]
DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def device_spec(device_name: str | None = None) -> DeviceSpec | None:
    """The table entry for a device name (default: the current CUDA device); None if unknown."""
    if device_name is None:
        if not torch.cuda.is_available():
            return None
        device_name = torch.cuda.get_device_name()
    return next((spec for spec in DEVICES if spec.name in device_name), None)


@functools.cache
def num_sms(device_index: int | None = None) -> int:
    """Streaming multiprocessors of a CUDA device (132 on an H100 SXM), read from the device."""
    if not torch.cuda.is_available():
        return 1
    index = torch.cuda.current_device() if device_index is None else device_index
    return torch.cuda.get_device_properties(index).multi_processor_count


def _time(flops: float, bytes_moved: float, flops_per_byte: float) -> float:
    return max(flops / flops_per_byte, bytes_moved)


def estimate(
    num_ids: int,
    num_rows: int,
    dim: int,
    out_dim: int,
    item: int = 2,
    device: DeviceSpec = DEFAULT_DEVICE,
) -> dict[str, float]:
    """Relative forward+backward cost of each strategy (arbitrary units, same scale)."""
    n, v, d, h = num_ids, num_rows, dim, out_dim
    fpb = device.flops_per_byte
    direct = _time(2 * n * d * h, item * (n * d + d * h + n * h), fpb)  # forward
    direct += _time(4 * n * d * h, item * (2 * n * h + 2 * n * d + 2 * d * h) + 4 * v * d, fpb)
    folded = _time(2 * v * d * h, item * (v * d + d * h + 2 * v * h + 2 * n * h), fpb)
    folded += _time(
        4 * v * d * h, item * (n * h + v * d + d * h) + 4 * (2 * v * h + 2 * v * d), fpb
    )
    return {"direct": direct, "folded": folded}


def prefer_folded(num_ids, num_rows: int, dim: int, out_dim: int) -> bool:
    """Whether the folded strategy is expected to be faster for this shape.

    ``num_ids`` may be symbolic (a dynamic batch under export); then the direct strategy is
    used, since it is right for every N and adds no guard on N.
    """
    if not isinstance(num_ids, int):
        return False
    cost = estimate(num_ids, num_rows, dim, out_dim, device=device_spec() or DEFAULT_DEVICE)
    return cost["folded"] < cost["direct"]


def roofline_ms(
    shape: tuple[int, int, int, int], dtype: str, mode: str, device: DeviceSpec
) -> float:
    """The anchors' roofline for ``(V, D, H, N)``: forward = max(2NDH / peak, bytes / bandwidth)
    with bytes = (N*D + D*H + N*H) elements + 8 bytes an id; forward+backward = 3x that."""
    _, d, h, n = shape
    item = {"bf16": 2, "fp16": 2, "fp32": 4}[dtype]
    moved = item * (n * d + d * h + n * h) + 8 * n
    forward = max(2 * n * d * h / device.peak_flops[dtype], moved / device.bandwidth) * 1e3
    return forward if mode == "fwd" else 3 * forward
