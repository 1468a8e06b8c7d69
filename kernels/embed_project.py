"""Triton kernels for the fused embedding lookup + linear projection, ``y = E[ids] @ W.T + b``.

Installed as ``mmembed.kernels.embed_project``. The rest of the op lives in
``mmembed/ops/embed_project/`` (Liger-Kernel's layout): ``op.py`` registers these kernels as torch
ops with their autograd, ``reference.py`` is the torch reference every kernel is tested against,
``cost_model.py`` picks the strategy and ``onnx.py`` lowers the op for ONNX.

Shapes: ``ids`` (N,) int32/int64, ``E`` (V, D) table, ``W`` (H, D) projection, ``b`` (H,).

Every kernel masks ids outside ``[0, V)`` so that no load or store ever leaves the table, even when
the caller disabled the host-side id check: such rows read as zeros and are never written.

Loop bounds over the contracted dimension are ``tl.constexpr`` (one compile per model width)
while N stays a runtime argument, so a new batch size never triggers a recompilation.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

__all__ = [
    "interpreting",
    "forward_direct",
    "gather_rows",
    "projection_weight_grad",
    "table_grad_atomic",
    "sort_ids",
    "segment_sum_rows",
    "table_grad_from_segments",
    "scatter_add_rows",
]


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@dataclass(frozen=True)
class Blocks:
    """Tile sizes of a GEMM-shaped kernel: output tile ``rows x cols``, reduction step ``depth``."""

    rows: int
    cols: int
    depth: int
    warps: int
    stages: int


def _pow2(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(x), 1))))


def _gemm_blocks(rows: int, cols: int, depth: int) -> Blocks:
    # The interpreter's cost grows with the number of programs, so it gets the largest tiles.
    if interpreting():
        return Blocks(_pow2(rows, 16, 128), _pow2(cols, 16, 128), _pow2(depth, 16, 64), 4, 1)
    return Blocks(_pow2(rows, 16, 64), _pow2(cols, 16, 128), _pow2(depth, 16, 64), 4, 3)


def _launcher(kernel, on_cuda: bool):
    # wrap_triton makes the launch visible to torch.compile/export when traced inside a
    # triton_op; it refuses interpreter-defined kernels, which are launched directly instead.
    if on_cuda:
        return torch.library.wrap_triton(kernel)
    return kernel


def _ieee(dtype: torch.dtype) -> bool:
    # fp32 matches torch's default (no TF32) unless the user enabled TF32 for matmuls.
    return dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32


@triton.jit
def _load_rows(ids_ptr, offs, mask, V):
    """Row indices (int64) of the ids at ``offs``, and which are real: lanes masked off or holding
    an id outside [0, V) point at row 0 and are flagged invalid, so no access leaves the table."""
    rows = tl.load(ids_ptr + offs, mask=mask, other=0).to(tl.int64)
    valid = mask & (rows >= 0) & (rows < V)
    return tl.where(valid, rows, 0), valid


# --------------------------------------------------------------------------------------------
# Forward: Y = E[ids] @ W.T + b, table rows gathered straight into the GEMM tiles.
# --------------------------------------------------------------------------------------------
@triton.jit
def _forward_direct_kernel(
    ids_ptr, e_ptr, w_ptr, b_ptr, y_ptr,
    N, V, H, stride_e, stride_w, stride_y,
    D: tl.constexpr, HAS_BIAS: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_h = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    n_mask = offs_n < N
    h_mask = offs_h < H
    rows, valid = _load_rows(ids_ptr, offs_n, n_mask, V)

    acc = tl.zeros((BLOCK_N, BLOCK_H), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        d_mask = offs_d < D
        a = tl.load(
            e_ptr + rows[:, None] * stride_e + offs_d[None, :],
            mask=valid[:, None] & d_mask[None, :],
            other=0.0,
        )
        w = tl.load(
            w_ptr + offs_h[None, :].to(tl.int64) * stride_w + offs_d[:, None],
            mask=h_mask[None, :] & d_mask[:, None],
            other=0.0,
        )
        if UPCAST:  # the interpreter's bf16/fp16 dot is wrong (triton issue 11584)
            a = a.to(tl.float32)
            w = w.to(tl.float32)
        else:
            a = a.to(w.dtype)
        if IEEE:
            acc = tl.dot(a, w, acc, input_precision="ieee")
        else:
            acc = tl.dot(a, w, acc)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_h, mask=h_mask, other=0.0).to(tl.float32)[None, :]
    out = y_ptr + offs_n[:, None].to(tl.int64) * stride_y + offs_h[None, :]
    tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=n_mask[:, None] & h_mask[None, :])


def forward_direct(ids: torch.Tensor, E: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None):
    """``E[ids] @ W.T + b`` in one pass; the result has W's dtype."""
    N, (V, D), H = ids.shape[0], E.shape, W.shape[0]
    y = torch.empty((N, H), device=E.device, dtype=W.dtype)
    if N == 0:
        return y
    blk = _gemm_blocks(N, H, D)
    grid = (triton.cdiv(N, blk.rows), triton.cdiv(H, blk.cols))
    _launcher(_forward_direct_kernel, E.is_cuda)[grid](
        ids, E, W, b if b is not None else W, y,
        N, V, H, E.stride(0), W.stride(0), y.stride(0),
        D=D, HAS_BIAS=b is not None, IEEE=_ieee(W.dtype), UPCAST=interpreting(),
        BLOCK_N=blk.rows, BLOCK_H=blk.cols, BLOCK_D=blk.depth,
        num_warps=blk.warps, num_stages=blk.stages,
    )  # fmt: skip
    return y


# --------------------------------------------------------------------------------------------
# Row gather (folded forward and the no-projection lookup): Y = T[ids].
# --------------------------------------------------------------------------------------------
@triton.jit
def _gather_rows_kernel(
    ids_ptr, t_ptr, y_ptr, N, V, H, stride_t, stride_y,
    BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    n_mask = offs_n < N
    h_mask = offs_h < H
    rows, valid = _load_rows(ids_ptr, offs_n, n_mask, V)
    vals = tl.load(
        t_ptr + rows[:, None] * stride_t + offs_h[None, :],
        mask=valid[:, None] & h_mask[None, :],
        other=0.0,
    )
    out = y_ptr + offs_n[:, None].to(tl.int64) * stride_y + offs_h[None, :]
    tl.store(out, vals.to(y_ptr.dtype.element_ty), mask=n_mask[:, None] & h_mask[None, :])


def gather_rows(ids: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """``T[ids]`` with out-of-range ids masked."""
    N, (V, H) = ids.shape[0], T.shape
    y = torch.empty((N, H), device=T.device, dtype=T.dtype)
    if N == 0:
        return y
    bn, bh = (_pow2(N, 16, 128), _pow2(H, 16, 256)) if interpreting() else (32, _pow2(H, 16, 256))
    grid = (triton.cdiv(N, bn), triton.cdiv(H, bh))
    _launcher(_gather_rows_kernel, T.is_cuda)[grid](
        ids, T, y, N, V, H, T.stride(0), y.stride(0), BLOCK_N=bn, BLOCK_H=bh, num_warps=4
    )
    return y


# --------------------------------------------------------------------------------------------
# dW = dY.T @ E[ids] (gather fused into the GEMM) and db = dY.sum(0).
# Split over N into a fixed number of partial sums, then reduced in a fixed order by torch:
# deterministic, and enough programs to fill the GPU when H x D is small.
# --------------------------------------------------------------------------------------------
@triton.jit
def _projection_grad_kernel(
    dy_ptr, ids_ptr, e_ptr, dw_ptr, db_ptr,
    N, V, H, stride_dy, stride_e, rows_per_split,
    D: tl.constexpr, HAS_BIAS: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_h = tl.program_id(0)
    pid_d = tl.program_id(1)
    split = tl.program_id(2)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    h_mask = offs_h < H
    d_mask = offs_d < D
    start = split * rows_per_split
    stop = tl.minimum(start + rows_per_split, N)

    acc = tl.zeros((BLOCK_H, BLOCK_D), dtype=tl.float32)
    bias_acc = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for n0 in range(start, stop, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < stop
        rows, valid = _load_rows(ids_ptr, offs_n, n_mask, V)
        dy = tl.load(
            dy_ptr + offs_n[:, None].to(tl.int64) * stride_dy + offs_h[None, :],
            mask=n_mask[:, None] & h_mask[None, :],
            other=0.0,
        )
        e = tl.load(
            e_ptr + rows[:, None] * stride_e + offs_d[None, :],
            mask=valid[:, None] & d_mask[None, :],
            other=0.0,
        )
        if HAS_BIAS:
            bias_acc += tl.sum(dy.to(tl.float32), axis=0)
        if UPCAST:
            dy = dy.to(tl.float32)
            e = e.to(tl.float32)
        else:
            e = e.to(dy.dtype)
        if IEEE:
            acc = tl.dot(tl.trans(dy), e, acc, input_precision="ieee")
        else:
            acc = tl.dot(tl.trans(dy), e, acc)
    base = split.to(tl.int64) * H * D
    out = dw_ptr + base + offs_h[:, None].to(tl.int64) * D + offs_d[None, :]
    tl.store(out, acc, mask=h_mask[:, None] & d_mask[None, :])
    if HAS_BIAS:
        if pid_d == 0:
            tl.store(db_ptr + split.to(tl.int64) * H + offs_h, bias_acc, mask=h_mask)


@functools.cache
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _num_splits(n: int, tiles: int, device: torch.device) -> int:
    if interpreting() or device.type != "cuda":
        return 1
    # Aim for a few waves of programs on the device's SMs, each split keeping >= 256 rows.
    sms = _num_sms(device.index if device.index is not None else torch.cuda.current_device())
    want = max(1, (4 * sms) // max(tiles, 1))
    return max(1, min(want, n // 256, 64))


def projection_weight_grad(dy: torch.Tensor, ids: torch.Tensor, E: torch.Tensor, with_bias: bool):
    """``(dY.T @ E[ids], dY.sum(0))`` in fp32; the bias grad is None when ``with_bias`` is False."""
    N, H = dy.shape
    V, D = E.shape
    if interpreting():
        blk = Blocks(_pow2(H, 16, 128), _pow2(D, 16, 128), _pow2(N, 16, 128), 4, 1)
    else:
        blk = Blocks(_pow2(H, 16, 64), _pow2(D, 16, 64), 64, 4, 3)
    tiles = triton.cdiv(H, blk.rows) * triton.cdiv(D, blk.cols)
    splits = _num_splits(N, tiles, dy.device)
    rows_per_split = triton.cdiv(max(N, 1), splits)
    dw = torch.empty((splits, H, D), device=dy.device, dtype=torch.float32)
    db = torch.empty((splits, H), device=dy.device, dtype=torch.float32) if with_bias else None
    grid = (triton.cdiv(H, blk.rows), triton.cdiv(D, blk.cols), splits)
    _launcher(_projection_grad_kernel, dy.is_cuda)[grid](
        dy, ids, E, dw, db if with_bias else dw,
        N, V, H, dy.stride(0), E.stride(0), rows_per_split,
        D=D, HAS_BIAS=with_bias, IEEE=_ieee(dy.dtype), UPCAST=interpreting(),
        BLOCK_N=blk.depth, BLOCK_H=blk.rows, BLOCK_D=blk.cols,
        num_warps=blk.warps, num_stages=blk.stages,
    )  # fmt: skip
    return dw.sum(0), (db.sum(0) if with_bias else None)


# --------------------------------------------------------------------------------------------
# dE, fast mode: dE[ids[n]] += dY[n] @ W, fused GEMM + fp32 atomic scatter (no N x D buffer).
# --------------------------------------------------------------------------------------------
@triton.jit
def _table_grad_atomic_kernel(
    dy_ptr, ids_ptr, w_ptr, de_ptr,
    N, V, padding_idx, stride_dy, stride_w, stride_de,
    H: tl.constexpr, D: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n_mask = offs_n < N
    d_mask = offs_d < D
    rows, valid = _load_rows(ids_ptr, offs_n, n_mask, V)
    valid = valid & (rows != padding_idx)

    acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        h_mask = offs_h < H
        dy = tl.load(
            dy_ptr + offs_n[:, None].to(tl.int64) * stride_dy + offs_h[None, :],
            mask=valid[:, None] & h_mask[None, :],
            other=0.0,
        )
        w = tl.load(
            w_ptr + offs_h[:, None].to(tl.int64) * stride_w + offs_d[None, :],
            mask=h_mask[:, None] & d_mask[None, :],
            other=0.0,
        )
        if UPCAST:
            dy = dy.to(tl.float32)
            w = w.to(tl.float32)
        if IEEE:
            acc = tl.dot(dy, w, acc, input_precision="ieee")
        else:
            acc = tl.dot(dy, w, acc)
    out = de_ptr + rows[:, None] * stride_de + offs_d[None, :]
    tl.atomic_add(out, acc, mask=valid[:, None] & d_mask[None, :])


def table_grad_atomic(
    dy: torch.Tensor, ids: torch.Tensor, W: torch.Tensor, V: int, padding_idx: int
):
    """fp32 ``dE`` (V, D) with ``dE[ids[n]] += dY[n] @ W``; the padding row stays zero."""
    N, H = dy.shape
    D = W.shape[1]
    de = torch.zeros((V, D), device=dy.device, dtype=torch.float32)
    if N == 0:
        return de
    blk = _gemm_blocks(N, D, H)
    grid = (triton.cdiv(N, blk.rows), triton.cdiv(D, blk.cols))
    _launcher(_table_grad_atomic_kernel, dy.is_cuda)[grid](
        dy, ids, W, de, N, V, padding_idx, dy.stride(0), W.stride(0), de.stride(0),
        H=H, D=D, IEEE=_ieee(dy.dtype), UPCAST=interpreting(),
        BLOCK_N=blk.rows, BLOCK_H=blk.depth, BLOCK_D=blk.cols,
        num_warps=blk.warps, num_stages=blk.stages,
    )  # fmt: skip
    return de


# --------------------------------------------------------------------------------------------
# Deterministic reduction by id (FBGEMM's recipe): ids are sorted once, each run of equal ids is
# summed by one program in a fixed order, and written once. No float atomics anywhere.
# --------------------------------------------------------------------------------------------
@triton.jit
def _segment_sum_kernel(
    sorted_ids_ptr, order_ptr, seg_end_ptr, x_ptr, out_ptr,
    N, V, H, stride_x, stride_out,
    TARGET_IS_ID: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    i = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    h_mask = offs_h < H
    row_id = tl.load(sorted_ids_ptr + i).to(tl.int64)
    prev_id = tl.load(sorted_ids_ptr + tl.maximum(i - 1, 0)).to(tl.int64)
    is_start = (i == 0) | (prev_id != row_id)
    # A program that does not open a run loops zero times and stores nothing.
    stop = tl.where(is_start, tl.load(seg_end_ptr + i).to(tl.int32), i)
    acc = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for r0 in range(i, stop, BLOCK_R):
        offs_r = r0 + tl.arange(0, BLOCK_R)
        r_mask = offs_r < stop
        src = tl.load(order_ptr + offs_r, mask=r_mask, other=0).to(tl.int64)
        vals = tl.load(
            x_ptr + src[:, None] * stride_x + offs_h[None, :],
            mask=r_mask[:, None] & h_mask[None, :],
            other=0.0,
        )
        acc += tl.sum(vals.to(tl.float32), axis=0)
    if TARGET_IS_ID:
        target = row_id
        ok = is_start & (row_id >= 0) & (row_id < V)
    else:
        target = i.to(tl.int64)
        ok = is_start
    tl.store(out_ptr + target * stride_out + offs_h, acc, mask=h_mask & ok)


def sort_ids(ids: torch.Tensor):
    """Stable sort of the ids plus, for each sorted position, the end of its run of equal ids."""
    sorted_ids, order = torch.sort(ids, stable=True)
    seg_end = torch.searchsorted(sorted_ids, sorted_ids, right=True)
    return sorted_ids, order, seg_end


def segment_sum_rows(x: torch.Tensor, sorted_ids, order, seg_end, V: int, *, dense: bool):
    """Sum the rows of ``x`` (N, H) by id, deterministically, in fp32.

    ``dense=True`` returns (V, H) with row v = sum of rows whose id is v (zeros elsewhere);
    ``dense=False`` returns (N, H) where sorted position i holds its run's sum if a run starts at
    i, and zeros elsewhere.
    """
    N, H = x.shape
    out = torch.zeros((V if dense else N, H), device=x.device, dtype=torch.float32)
    if N == 0:
        return out
    bh = _pow2(H, 16, 256)
    br = 64 if interpreting() else 16
    grid = (N, triton.cdiv(H, bh))
    _launcher(_segment_sum_kernel, x.is_cuda)[grid](
        sorted_ids, order, seg_end, x, out, N, V, H, x.stride(0), out.stride(0),
        TARGET_IS_ID=dense, BLOCK_R=br, BLOCK_H=bh, num_warps=4,
    )  # fmt: skip
    return out


def table_grad_from_segments(run_sums, sorted_ids, W, V: int, padding_idx: int, out_dtype):
    """``dE`` (V, D): each run's summed dY row (from ``segment_sum_rows(dense=False)``) times W,
    written once to its id's row. Deterministic; the padding row stays zero.

    The GEMM runs in torch (cuBLAS, deterministic): a fused Triton version of this step hit a
    Triton 3.6 compiler crash on sm90 (``arith.andi`` operands with mismatched layouts).
    """
    N = run_sums.shape[0]
    starts = torch.ones_like(sorted_ids, dtype=torch.bool)
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    # Rows that open no run (and the padding row) all go to a scratch row V, dropped below.
    target = torch.where(starts & (sorted_ids != padding_idx), sorted_ids, V)
    rows = run_sums @ W.to(torch.float32)  # rows that open no run are zero
    d_table = torch.zeros((V + 1, W.shape[1]), device=run_sums.device, dtype=torch.float32)
    if N:
        d_table.index_put_((target,), rows)
    return d_table[:V].to(out_dtype)


# --------------------------------------------------------------------------------------------
# Fast reduction by id: out[ids[n]] += x[n] with fp32 atomics (folded backward, plain lookup).
# --------------------------------------------------------------------------------------------
@triton.jit
def _scatter_add_rows_kernel(
    ids_ptr, x_ptr, out_ptr, N, V, H, stride_x, stride_out,
    BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    n_mask = offs_n < N
    h_mask = offs_h < H
    rows, valid = _load_rows(ids_ptr, offs_n, n_mask, V)
    vals = tl.load(
        x_ptr + offs_n[:, None].to(tl.int64) * stride_x + offs_h[None, :],
        mask=valid[:, None] & h_mask[None, :],
        other=0.0,
    )
    out = out_ptr + rows[:, None] * stride_out + offs_h[None, :]
    tl.atomic_add(out, vals.to(tl.float32), mask=valid[:, None] & h_mask[None, :])


def scatter_add_rows(x: torch.Tensor, ids: torch.Tensor, V: int) -> torch.Tensor:
    """fp32 (V, H) with ``out[ids[n]] += x[n]`` (order of additions not fixed)."""
    N, H = x.shape
    out = torch.zeros((V, H), device=x.device, dtype=torch.float32)
    if N == 0:
        return out
    bn, bh = (_pow2(N, 16, 128), _pow2(H, 16, 256)) if interpreting() else (32, _pow2(H, 16, 256))
    grid = (triton.cdiv(N, bn), triton.cdiv(H, bh))
    _launcher(_scatter_add_rows_kernel, x.is_cuda)[grid](
        ids, x, out, N, V, H, x.stride(0), out.stride(0), BLOCK_N=bn, BLOCK_H=bh, num_warps=4
    )
    return out
