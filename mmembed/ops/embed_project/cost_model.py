"""Cost model of the fused embedding-projection: which shape class a call falls in, which
implementation runs it, and the roofline limits the benchmark reports against.

The algebra every plan rests on (``S`` = the rows of dY summed per id, one row per table row):

    forward   Y = E[ids] @ W.T + b = T[ids]  with the folded table T = E @ W.T + b
    backward  dE = S @ W,  dW = S.T @ E,  db = S.sum(0)

Three shape classes (:func:`shape_class`), each with its own plan:

- ``"small"`` (V up to a few hundred rows, e.g. characters): fold, then a wide-row gather;
  S by a one-hot MMA (``onehot(ids).T @ dY``, exact: one-hot entries are 0 or 1), cheap while its
  ``2 V`` FLOPs per dY element stay under the time of reading that element (:func:`onehot_rows`).
- ``"subword"`` (V < N, folding pays): fold; S by a stable sort of the ids and a segment sum
  that writes every row of S once.
- ``"large"`` (V > N): the direct plan, ``E[ids] @ W.T`` gathered into the GEMM; backward
  ``dX = dY @ W``, ``dW = dY.T @ E[ids]``, then dE = the segment sum of dX.

Folding pays when its V x D x H GEMMs cost less than the direct N x D x H ones
(:func:`estimate`, a roofline ``max(flops / peak, bytes / bandwidth)`` with the figures of the
device, :data:`DEVICES`). The choice changes speed only, never the result beyond rounding.

Which backend ``backend="auto"`` runs per (device, class) is the explicit table :data:`AUTO`:
an entry may name the Triton kernels only where a recorded GPU benchmark shows them faster
than the torch path for that class (``scripts/bench_embedding.py`` prints the entries its
measurements support).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

SMALL, SUBWORD, LARGE = "small", "subword", "large"
SHAPE_CLASSES = (SMALL, SUBWORD, LARGE)
TORCH_FOLD, TORCH_DIRECT, TRITON = "torch-fold", "torch-direct", "triton"


@dataclass(frozen=True)
class DeviceSpec:
    """Dense peak FLOP/s per dtype and copy bandwidth (bytes/s) of one device kind."""

    name: str
    peak_flops: dict[str, float]
    bandwidth: float

    def flops_per_byte(self, dtype: str = "bf16") -> float:
        """The balance point: a kernel doing fewer FLOPs per byte moved is bandwidth-bound."""
        return self.peak_flops[dtype] / self.bandwidth


# Matched as substrings of torch.cuda.get_device_name(), most specific first. Bandwidths are
# measured copy rates (anchors.md), not the datasheet's.
DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec("H200", {"bf16": 790e12, "fp16": 790e12, "fp32": 60e12}, 4.0e12),
    DeviceSpec("H100", {"bf16": 790e12, "fp16": 790e12, "fp32": 60e12}, 3.0e12),
    DeviceSpec("A100", {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12}, 1.7e12),
    DeviceSpec("L4", {"bf16": 121e12, "fp16": 121e12, "fp32": 30e12}, 0.25e12),
)
# Unknown GPUs are costed like an H100: only the balance point matters for the plan.
DEFAULT_DEVICE = DEVICES[1]
# One x86 core with AVX2 (measured 2026-12-02 on the CI machine, AMD EPYC, torch 2.11 + MKL):
# ~75 GFLOP/s fp32 GEMM, ~20 GB/s for gathers. bf16/fp16 GEMMs run in fp32 on CPUs without
# native support (see :func:`cpu_gemm_dtype`), hence the same peak.
CPU = DeviceSpec("cpu", {"bf16": 75e9, "fp16": 75e9, "fp32": 75e9}, 20e9)
DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
ITEM_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}

# backend="auto": the implementation per device and shape class. Keys are DeviceSpec names
# ("cpu", "H100", ...) with "cuda" for any GPU without its own entry.
# - cpu: the torch path; folding measured 8-14x faster than nn.Embedding + nn.Linear for small V
#   and 3x at V = N/4 (docs/benchmarks.md).
# - cuda: the torch path everywhere. The last recorded GPU benchmark (docs/benchmarks.md, H100,
#   2026-11-27) has the Triton kernels 1.5-2.9x slower than eager forward+backward on every
#   anchor shape; the redesigned kernels are not measured yet. Folding in torch is measured
#   faster only for small V (anchors.md: the folded forward halves at chars-asr, its backward
#   is the same sum-by-id eager runs). A GPU run of scripts/gpu_check.sh prints the entries its
#   measurements support; only those may replace these.
AUTO: dict[str, dict[str, str]] = {
    "cpu": {SMALL: TORCH_FOLD, SUBWORD: TORCH_FOLD, LARGE: TORCH_DIRECT},
    "cuda": {SMALL: TORCH_FOLD, SUBWORD: TORCH_DIRECT, LARGE: TORCH_DIRECT},
}
# The Triton direct forward per device: "addmm" (gather, then cuBLAS) until a GPU benchmark
# shows the gather-fused GEMM faster on that device; then "fused". "cpu" is reached only under
# the Triton interpreter (the tests), which exercises the fused kernel.
DIRECT_FORWARD: dict[str, str] = {"cpu": "fused", "cuda": "addmm"}


def device_spec(device_name: str | None = None) -> DeviceSpec | None:
    """The table entry for a device name (default: the current CUDA device); None if unknown."""
    if device_name is None:
        if not torch.cuda.is_available():
            return None
        device_name = torch.cuda.get_device_name()
    if device_name == "cpu":
        return CPU
    return next((spec for spec in DEVICES if spec.name in device_name), None)


@functools.cache
def _cuda_spec(index: int) -> DeviceSpec:
    return device_spec(torch.cuda.get_device_name(index)) or DEFAULT_DEVICE


def spec_for(device: torch.device) -> DeviceSpec:
    """The cost figures of the device a tensor lives on (meta tensors are costed like CUDA)."""
    if device.type == "cpu":
        return CPU
    if device.type == "cuda" and torch.cuda.is_available():
        return _cuda_spec(device.index if device.index is not None else torch.cuda.current_device())
    return DEFAULT_DEVICE


def table_entry(table: dict, spec: DeviceSpec):
    """``table[spec.name]``, falling back to the "cuda" entry for GPUs without their own."""
    return table.get(spec.name, table["cuda"] if spec is not CPU else table["cpu"])


@functools.cache
def num_sms(device_index: int | None = None) -> int:
    """Streaming multiprocessors of a CUDA device (132 on an H100 SXM), read from the device."""
    if not torch.cuda.is_available():
        return 1
    index = torch.cuda.current_device() if device_index is None else device_index
    return torch.cuda.get_device_properties(index).multi_processor_count


@functools.cache
def cpu_gemm_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the torch path runs CPU GEMMs in: fp32 for bf16/fp16 on CPUs without native
    support (no AVX512-BF16/AMX: torch then uses a fallback GEMM ~12x slower than fp32 MKL, and
    rounding fp32 results to bf16 is what a native bf16 GEMM with fp32 accumulation does)."""
    if dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return dtype
    if dtype == torch.float16 and torch.ops.mkldnn._is_mkldnn_fp16_supported():
        return dtype
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _time(flops: float, bytes_moved: float, flops_per_byte: float) -> float:
    return max(flops / flops_per_byte, bytes_moved)


def estimate(
    num_ids: int,
    num_rows: int,
    dim: int,
    out_dim: int,
    item: int = 2,
    device: DeviceSpec = DEFAULT_DEVICE,
    dtype: str = "bf16",
) -> dict[str, float]:
    """Relative forward+backward cost of the folded and direct plans (same arbitrary units)."""
    n, v, d, h = num_ids, num_rows, dim, out_dim
    fpb = device.flops_per_byte(dtype)
    # direct: gather-GEMM forward; dX and dW GEMMs over N; dX summed by id into a dense dE
    direct = _time(2 * n * d * h, item * (n * d + d * h + n * h), fpb)
    direct += _time(4 * n * d * h, item * (2 * n * h + 3 * n * d + 2 * d * h + v * d), fpb)
    # folded: V x D x H GEMM, gather of N rows; dY summed by id into S, then two V-row GEMMs
    folded = _time(2 * v * d * h, item * (v * d + d * h + v * h + n * h), fpb)
    folded += _time(4 * v * d * h, item * (n * h + 2 * v * h + 2 * v * d + 2 * d * h), fpb)
    return {"direct": direct, "folded": folded}


def onehot_rows(device: DeviceSpec, dtype: str = "bf16") -> int:
    """The largest V for which the one-hot MMA (2 V FLOPs per dY element) stays bandwidth-bound:
    263 rows for bf16 on an H100, 197 on an H200, 40 for fp32 (no tensor cores at IEEE)."""
    return int(device.flops_per_byte(dtype) * ITEM_BYTES[dtype] / 2)


def shape_class(
    num_ids, num_rows: int, dim: int, out_dim: int, dtype: str = "bf16",
    device: DeviceSpec = DEFAULT_DEVICE,
) -> str:  # fmt: skip
    """``"small"``, ``"subword"`` or ``"large"`` (see the module docstring).

    ``num_ids`` may be symbolic (a dynamic batch under export): then the direct plan is used,
    since it is right for every N and adds no guard on N.
    """
    if not isinstance(num_ids, int):
        return LARGE
    cost = estimate(num_ids, num_rows, dim, out_dim, ITEM_BYTES[dtype], device, dtype)
    if cost["folded"] >= cost["direct"]:
        return LARGE
    return SMALL if num_rows <= onehot_rows(device, dtype) else SUBWORD


@dataclass(frozen=True)
class Plan:
    """How one call computes: ``backend`` "torch" or "triton", and whether it folds."""

    backend: str
    fold: bool
    shape_class: str


def plan(
    num_ids, num_rows: int, dim: int, out_dim: int | None, dtype: torch.dtype,
    device: torch.device, backend: str = "auto", strategy: str = "auto",
) -> Plan:  # fmt: skip
    """The plan for a call: the shape class on this device, then :data:`AUTO` for
    ``backend="auto"``; ``strategy`` "direct"/"folded" overrides the fold decision."""
    spec = spec_for(device)
    if out_dim is None:  # a plain lookup: nothing to fold
        klass = SMALL if num_rows <= onehot_rows(spec, DTYPE_NAMES.get(dtype, "fp32")) else LARGE
    else:
        klass = shape_class(num_ids, num_rows, dim, out_dim, DTYPE_NAMES.get(dtype, "fp32"), spec)
    if backend == "auto":
        choice = table_entry(AUTO, spec)[klass]
        backend = "triton" if choice == TRITON else "torch"
        fold = klass != LARGE if choice == TRITON else choice == TORCH_FOLD
    else:
        fold = klass != LARGE
    if strategy != "auto":
        fold = strategy == "folded"
    return Plan(backend, fold and out_dim is not None, klass)


cached_plan = functools.lru_cache(maxsize=1024)(plan)


def expected_distinct(num_ids: int, num_rows: int) -> float:
    """Expected number of distinct ids among ``num_ids`` uniform draws from ``num_rows``."""
    return num_rows * -math.expm1(-num_ids / num_rows)


def roofline_ms(
    shape: tuple[int, int, int, int], dtype: str, mode: str, device: DeviceSpec,
    distinct: float | None = None,
) -> float:  # fmt: skip
    """The compulsory minimum time of ``(V, D, H, N)`` on ``device``, in ms: the faster of the
    direct and the folded plan, each ``max(flops / peak, bytes / bandwidth)``.

    Forward, direct (the anchors' limit): 2NDH FLOPs, (N*D + D*H + N*H) elements + 8 bytes an
    id; folded: 2VDH FLOPs, the table, W, T and the N output rows. Forward+backward adds the
    sum-by-id backward: dW and dE on the U distinct ids (``distinct``, default the expectation
    for uniform ids), dY read once, the dense dE written once. With the table's measured
    bandwidths, fwd+bwd on H100 / H200 in ms: chars-asr 0.045 / 0.034, albert 0.095 / 0.071,
    caption 0.062 / 0.046, gpt2 0.066 / 0.066, llama 0.256 / 0.256 (anchors.md "revisited"
    used datasheet peaks, 989 TFLOP/s and 3.35 / 4.8 TB/s, hence its lower figures).
    """
    v, d, h, n = shape
    item = ITEM_BYTES[dtype]
    u = expected_distinct(n, v) if distinct is None else distinct
    backward = mode != "fwd"
    plans = []
    for rows, gathered in ((n, n * d), (v, v * d + v * h)):  # direct, folded
        flops = 2 * rows * d * h + (4 * min(u, rows) * d * h if backward else 0)
        moved = item * (gathered + d * h + n * h) + 8 * n
        if backward:
            moved += item * (n * h + v * d + (n * d if rows == n else v * h))
        plans.append(max(flops / device.peak_flops[dtype], moved / device.bandwidth) * 1e3)
    return min(plans)
