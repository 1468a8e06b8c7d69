"""Triton kernels for the fused embedding lookup + linear projection, ``y = E[ids] @ W.T + b``.

Installed as ``mmembed.kernels.embed_project``. The rest of the op lives in
``mmembed/ops/embed_project/`` (Liger-Kernel's layout): ``op.py`` registers these kernels as torch
ops and composes them with cuBLAS GEMMs into the plans of ``cost_model.py``; ``reference.py`` is
the torch reference every kernel is tested against.

Shapes: ``ids`` (N,) int32/int64, ``E`` (V, D) table, ``W`` (H, D) projection, ``b`` (H,).

The kernels:

- :func:`gather_rows`: ``T[ids]``, wide rows (the folded forward, the plain lookup, ``E[ids]``);
- :func:`gather_quantized_rows`: ``q[ids] * scale[ids]`` from an int8 or packed int4 table with
  per-row scales, dequantised in registers (no float copy of the table ever exists);
- :func:`forward_direct`: ``E[ids] @ W.T + b`` with the gather inside the GEMM tiles (grouped
  launch order, no K masks when the tile divides D, the A tile loaded once per program when D
  fits one tile; autotuned on CUDA);
- :func:`onehot_sum` and :func:`segment_sum`: ``S[v] = sum of x[n] over ids[n] == v``, the
  reductions by id of the backward. One-hot MMA for small V; otherwise a stable sort, run bounds
  by ``searchsorted``, and a segment sum that writes every row of S exactly once (empty rows as
  zeros, no memset). Runs longer than ``chunk`` rows are cut into fixed chunks whose partial
  sums are added in chunk order.

No float atomics anywhere: every backward is bitwise repeatable. No host synchronisation: every
size is a function of the input shapes, so the backward can be captured in a CUDA graph.

Every kernel masks ids outside ``[0, V)`` so that no load or store ever leaves the table, even when
the caller disabled the host-side id check: such ids read as zero rows (the folded forward reads
the ``fill`` row, the projected zero row, i.e. the bias) and are never written.

Loop bounds over the contracted dimension are ``tl.constexpr`` (one compile per model width)
while N stays a runtime argument, so a new batch size never triggers a recompilation.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

__all__ = [
    "interpreting",
    "gather_rows",
    "gather_quantized_rows",
    "forward_direct",
    "masked_ids",
    "onehot_sum",
    "segment_sum",
]


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _pow2(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(x), 1))))


def _launcher(kernel, on_cuda: bool):
    # wrap_triton makes the launch visible to torch.compile/export when traced inside a
    # triton_op; it refuses interpreter-defined kernels, which are launched directly instead.
    if on_cuda:
        return torch.library.wrap_triton(kernel)
    return kernel


def _ieee(dtype: torch.dtype) -> bool:
    # fp32 matches torch's default (no TF32) unless the user enabled TF32 for matmuls.
    return dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32


@functools.cache
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


@triton.jit
def _load_rows(ids_ptr, offs, mask, V):
    """Row indices (int64) of the ids at ``offs``, and which are real: lanes masked off or holding
    an id outside [0, V) point at row 0 and are flagged invalid, so no access leaves the table."""
    rows = tl.load(ids_ptr + offs, mask=mask, other=0).to(tl.int64)
    valid = mask & (rows >= 0) & (rows < V)
    return tl.where(valid, rows, 0), valid


# --------------------------------------------------------------------------------------------
# Row gather: Y = T[ids] (folded forward, plain lookup, E[ids] for dW).
# --------------------------------------------------------------------------------------------
@triton.jit
def _gather_rows_kernel(
    ids_ptr, t_ptr, fill_ptr, scale_ptr, y_ptr, N, V, H, stride_t, stride_y,
    HAS_FILL: tl.constexpr, QUANT: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    # QUANT: 0 float rows; 8 int8 rows; 4 packed int4 rows (two columns a byte, the even one in
    # the low nibble, stored as q + 8). Quantised rows are scaled by scale[row] in registers.
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    n_mask = offs_n < N
    h_mask = offs_h < H
    rows, valid = _load_rows(ids_ptr, offs_n, n_mask, V)
    mask = valid[:, None] & h_mask[None, :]
    if QUANT == 4:
        packed = tl.load(t_ptr + rows[:, None] * stride_t + (offs_h // 2)[None, :], mask=mask,
                         other=8).to(tl.int32)  # fmt: skip
        vals = ((packed >> ((offs_h % 2) * 4)[None, :]) & 15) - 8
    else:
        vals = tl.load(t_ptr + rows[:, None] * stride_t + offs_h[None, :], mask=mask, other=0)
    if QUANT != 0:
        scale = tl.load(scale_ptr + rows, mask=valid, other=0.0).to(tl.float32)
        vals = vals.to(tl.float32) * scale[:, None]
    if HAS_FILL:  # an invalid id reads the fill row (the folded table's projected zero row)
        fill = tl.load(fill_ptr + offs_h, mask=h_mask, other=0.0)
        vals = tl.where(valid[:, None], vals, fill[None, :].to(vals.dtype))
    out = y_ptr + offs_n[:, None].to(tl.int64) * stride_y + offs_h[None, :]
    tl.store(out, vals.to(y_ptr.dtype.element_ty), mask=n_mask[:, None] & h_mask[None, :])


def gather_rows(
    ids: torch.Tensor, T: torch.Tensor, fill: torch.Tensor | None = None, dtype=None,
    scales: torch.Tensor | None = None, width: int | None = None,
) -> torch.Tensor:  # fmt: skip
    """``T[ids]`` (in ``dtype``, default T's); ids outside the table read ``fill`` (or zeros).

    With ``scales`` (V,), T is a quantised table (int8, or uint8 holding packed int4 values,
    ``width`` of them a row) and the rows come out dequantised, ``q[ids] * scales[ids]``.
    """
    N, (V, H) = ids.shape[0], T.shape
    quant = 0 if scales is None else (4 if T.dtype == torch.uint8 else 8)
    H = width if width is not None else H
    y = torch.empty((N, H), device=T.device, dtype=dtype or T.dtype)
    if N == 0 or H == 0:
        return y
    bh = _pow2(H, 16, 1024)
    # Wide rows: a program copies BLOCK_N whole rows (up to 1024 elements each).
    bn = _pow2(N, 16, 128) if interpreting() else max(1, 8192 // bh)
    grid = (triton.cdiv(N, bn), triton.cdiv(H, bh))
    _launcher(_gather_rows_kernel, T.is_cuda)[grid](
        ids, T, fill if fill is not None else T, scales if scales is not None else T, y,
        N, V, H, T.stride(0), y.stride(0), HAS_FILL=fill is not None, QUANT=quant,
        BLOCK_N=bn, BLOCK_H=bh, num_warps=4 if bh <= 256 else 8,
    )  # fmt: skip
    return y


def gather_quantized_rows(
    ids: torch.Tensor, q: torch.Tensor, scales: torch.Tensor, dim: int, dtype: torch.dtype
) -> torch.Tensor:
    """(N, dim) ``dtype``: rows ``ids`` of a quantised table, ``q[ids] * scales[ids]``. ``q`` is
    int8 (V, dim), or uint8 (V, ceil(dim / 2)) holding two int4 values a byte (``dim`` then
    says how many are real); ``scales`` (V,). Ids outside the table read zeros."""
    return gather_rows(ids, q, dtype=dtype, scales=scales, width=dim)


# --------------------------------------------------------------------------------------------
# Direct forward: Y = E[ids] @ W.T + b, table rows gathered straight into the GEMM tiles.
# --------------------------------------------------------------------------------------------
@triton.jit
def _forward_direct_kernel(
    ids_ptr, e_ptr, w_ptr, b_ptr, y_ptr,
    N, V, H, stride_e, stride_w, stride_y, N_BUCKET,
    D: tl.constexpr, HAS_BIAS: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
    GROUP_N: tl.constexpr, H_TILES: tl.constexpr, EVEN_D: tl.constexpr,
):  # fmt: skip
    # Grouped launch order: GROUP_N consecutive row blocks walk the same W tiles, so those stay
    # in L2 while the gathered rows of E are read once per program.
    pid = tl.program_id(0)
    num_n = tl.cdiv(N, BLOCK_N)
    num_h = tl.cdiv(H, BLOCK_H * H_TILES)
    width = GROUP_N * num_h
    first_n = (pid // width) * GROUP_N
    group_size = tl.minimum(num_n - first_n, GROUP_N)
    pid_n = first_n + (pid % width) % group_size
    pid_h = (pid % width) // group_size

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    rows, valid = _load_rows(ids_ptr, offs_n, n_mask, V)
    offs_k = tl.arange(0, BLOCK_D)
    if BLOCK_D >= D:  # A-stationary: the gathered rows are loaded once for all H_TILES tiles
        a = tl.load(
            e_ptr + rows[:, None] * stride_e + offs_k[None, :],
            mask=valid[:, None] & (offs_k[None, :] < D),
            other=0.0,
        )
        if UPCAST:  # the interpreter's bf16/fp16 dot is wrong (triton issue 11584)
            a = a.to(tl.float32)
        else:
            a = a.to(w_ptr.dtype.element_ty)
    for t in tl.static_range(H_TILES):
        offs_h = (pid_h * H_TILES + t) * BLOCK_H + tl.arange(0, BLOCK_H)
        h_mask = offs_h < H
        acc = tl.zeros((BLOCK_N, BLOCK_H), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + offs_k
            w_ptrs = w_ptr + offs_h[None, :].to(tl.int64) * stride_w + offs_d[:, None]
            if EVEN_D:  # no K mask when BLOCK_D divides D
                w = tl.load(w_ptrs, mask=h_mask[None, :], other=0.0)
            else:
                w = tl.load(w_ptrs, mask=h_mask[None, :] & (offs_d[:, None] < D), other=0.0)
            if BLOCK_D < D:
                a_ptrs = e_ptr + rows[:, None] * stride_e + offs_d[None, :]
                if EVEN_D:
                    a = tl.load(a_ptrs, mask=valid[:, None], other=0.0)
                else:
                    a = tl.load(a_ptrs, mask=valid[:, None] & (offs_d[None, :] < D), other=0.0)
                if UPCAST:
                    a = a.to(tl.float32)
                else:
                    a = a.to(w.dtype)
            if UPCAST:
                w = w.to(tl.float32)
            if IEEE:
                acc = tl.dot(a, w, acc, input_precision="ieee")
            else:
                acc = tl.dot(a, w, acc)
        if HAS_BIAS:
            acc += tl.load(b_ptr + offs_h, mask=h_mask, other=0.0).to(tl.float32)[None, :]
        out = y_ptr + offs_n[:, None].to(tl.int64) * stride_y + offs_h[None, :]
        tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=n_mask[:, None] & h_mask[None, :])


def _direct_configs():
    shapes = [  # BLOCK_N, BLOCK_H, BLOCK_D, H_TILES, warps, stages
        (128, 128, 64, 1, 8, 3), (128, 256, 64, 1, 8, 3), (64, 128, 64, 1, 4, 4),
        (128, 128, 128, 1, 8, 3), (64, 256, 128, 1, 8, 3), (128, 128, 128, 2, 8, 3),
        (64, 128, 256, 2, 8, 2), (128, 64, 64, 1, 4, 4),
    ]  # fmt: skip
    return [
        triton.Config(
            {"BLOCK_N": bn, "BLOCK_H": bh, "BLOCK_D": bd, "GROUP_N": 8, "H_TILES": ht},
            num_warps=w,
            num_stages=s,
        )  # fmt: skip
        for bn, bh, bd, ht, w, s in shapes
    ]


# Autotuned on CUDA, keyed on the batch bucket and the widths; the interpreter gets one config.
_forward_direct_tuned = triton.autotune(configs=_direct_configs(), key=["N_BUCKET", "H", "D"])(
    triton.heuristics({"EVEN_D": lambda a: a["D"] % a["BLOCK_D"] == 0})(_forward_direct_kernel)
)


def forward_direct(
    ids: torch.Tensor, E: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None,
    config: dict | None = None,
) -> torch.Tensor:  # fmt: skip
    """``E[ids] @ W.T + b`` in one pass; the result has W's dtype. ``config`` fixes the tiles
    (``BLOCK_N``, ``BLOCK_H``, ``BLOCK_D``, ``GROUP_N``, ``H_TILES``) instead of autotuning."""
    N, (V, D), H = ids.shape[0], E.shape, W.shape[0]
    y = torch.empty((N, H), device=E.device, dtype=W.dtype)
    if N == 0:
        return y
    args = (ids, E, W, b if b is not None else W, y, N, V, H, E.stride(0), W.stride(0),
            y.stride(0), _pow2(N, 1, 1 << 20))  # fmt: skip
    flags = dict(D=D, HAS_BIAS=b is not None, IEEE=_ieee(W.dtype), UPCAST=interpreting())
    if config is None and E.is_cuda:

        def grid(meta):
            tiles_h = triton.cdiv(H, meta["BLOCK_H"] * meta["H_TILES"])
            return (triton.cdiv(N, meta["BLOCK_N"]) * tiles_h,)

        _launcher(_forward_direct_tuned, True)[grid](*args, **flags)
        return y
    cfg = config or {"BLOCK_N": _pow2(N, 16, 128), "BLOCK_H": _pow2(H, 16, 128),
                     "BLOCK_D": _pow2(D, 16, 128), "GROUP_N": 4, "H_TILES": 1}  # fmt: skip
    grid = (triton.cdiv(N, cfg["BLOCK_N"]) * triton.cdiv(H, cfg["BLOCK_H"] * cfg["H_TILES"]),)
    _launcher(_forward_direct_kernel, E.is_cuda)[grid](
        *args, **flags, **cfg, EVEN_D=D % cfg["BLOCK_D"] == 0,
        num_warps=8 if E.is_cuda else 4, num_stages=3 if E.is_cuda else 1,
    )  # fmt: skip
    return y


# --------------------------------------------------------------------------------------------
# Reductions by id: S[v] = sum of x[n] over ids[n] == v, deterministic, no atomics.
# --------------------------------------------------------------------------------------------
def masked_ids(ids: torch.Tensor, num_rows: int) -> torch.Tensor:
    """int32 ids with every id outside ``[0, num_rows)`` replaced by ``num_rows`` (one extra
    row that collects them: the zero row they read in the forward)."""
    valid = (ids >= 0) & (ids < num_rows)
    return torch.where(valid, ids, num_rows).to(torch.int32)


@triton.jit
def _onehot_sum_kernel(
    ids_ptr, x_ptr, part_ptr, N, R, H, stride_x, rows_per_split,
    UPCAST: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_V: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    offs_v = tl.program_id(0) * BLOCK_V + tl.arange(0, BLOCK_V)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    split = tl.program_id(2)
    h_mask = offs_h < H
    start = split * rows_per_split
    stop = tl.minimum(start + rows_per_split, N)
    acc = tl.zeros((BLOCK_V, BLOCK_H), dtype=tl.float32)
    for n0 in range(start, stop, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < stop
        ids = tl.load(ids_ptr + offs_n, mask=n_mask, other=-1)
        x = tl.load(
            x_ptr + offs_n[:, None].to(tl.int64) * stride_x + offs_h[None, :],
            mask=n_mask[:, None] & h_mask[None, :],
            other=0.0,
        )
        hit = ids[None, :] == offs_v[:, None]  # (BLOCK_V, BLOCK_N): exactly 0 or 1
        if UPCAST:
            onehot = hit.to(tl.float32)
            x = x.to(tl.float32)
        else:
            onehot = hit.to(x.dtype)
        if IEEE:  # fp32 rows: TF32 would round them
            acc = tl.dot(onehot, x, acc, input_precision="ieee")
        else:
            acc = tl.dot(onehot, x, acc)
    out = part_ptr + (split.to(tl.int64) * R + offs_v[:, None]) * H + offs_h[None, :]
    tl.store(out, acc, mask=(offs_v[:, None] < R) & h_mask[None, :])


def _num_splits(n: int, tiles: int, device: torch.device) -> int:
    if interpreting() or device.type != "cuda" or not isinstance(n, int):
        return 1
    # A few waves of programs on the device's SMs, each split keeping >= 512 rows.
    sms = _num_sms(device.index if device.index is not None else torch.cuda.current_device())
    return max(1, min((4 * sms) // max(tiles, 1), n // 512, 64))


def onehot_sum(x: torch.Tensor, ids: torch.Tensor, num_rows: int) -> torch.Tensor:
    """fp32 (num_rows, H): row v sums the rows of ``x`` whose id is v, as ``onehot(ids).T @ x``
    (for small ``num_rows``). ``ids`` are int32 in ``[0, num_rows]`` (:func:`masked_ids`); the
    split over N is summed in a fixed order."""
    N, H = x.shape
    # One tile over all rows when possible: every row tile reads all of x again.
    bv = _pow2(num_rows, 16, 256)
    bh = _pow2(H, 16, 64 if bv > 128 else 128)
    bn = _pow2(N, 16, 128) if interpreting() else 64
    tiles = triton.cdiv(num_rows, bv) * triton.cdiv(H, bh)
    splits = _num_splits(N, tiles, x.device)
    part = torch.empty((splits, num_rows, H), device=x.device, dtype=torch.float32)
    grid = (triton.cdiv(num_rows, bv), triton.cdiv(H, bh), splits)
    _launcher(_onehot_sum_kernel, x.is_cuda)[grid](
        ids, x, part, N, num_rows, H, x.stride(0), triton.cdiv(max(N, 1), splits),
        UPCAST=interpreting(), IEEE=x.dtype == torch.float32,
        BLOCK_V=bv, BLOCK_N=bn, BLOCK_H=bh, num_warps=8 if bv > 128 else 4,
    )  # fmt: skip
    return part[0] if splits == 1 else part.sum(0)


@triton.jit
def _segment_pieces_kernel(
    order_ptr, bounds_ptr, pieces_ptr, first_ptr, piece_run_ptr, x_ptr, out_ptr, part_ptr,
    P, R, H, stride_x, stride_out, padding_idx,
    CHUNK: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    # Piece p is piece k of run v: sorted rows bounds[v] + k*CHUNK .. (at most CHUNK of them).
    # A program sums BLOCK_P pieces side by side, each in row order, into S[v] directly when
    # the run is one piece, else into partial row p for the second pass.
    offs_p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    h_mask = offs_h < H
    run = tl.load(piece_run_ptr + offs_p, mask=offs_p < P, other=R)
    active = run < R
    run = tl.where(active, run, 0)
    lo = tl.load(bounds_ptr + run) + (offs_p - tl.load(first_ptr + run)) * CHUNK
    length = tl.where(active, tl.minimum(tl.load(bounds_ptr + run + 1) - lo, CHUNK), 0)
    acc = tl.zeros((BLOCK_P, BLOCK_H), dtype=tl.float32)
    for r in range(0, tl.max(length, axis=0)):
        r_mask = r < length
        src = tl.load(order_ptr + lo + r, mask=r_mask, other=0).to(tl.int64)
        vals = tl.load(
            x_ptr + src[:, None] * stride_x + offs_h[None, :],
            mask=r_mask[:, None] & h_mask[None, :],
            other=0.0,
        )
        acc += vals.to(tl.float32)
    pieces = tl.load(pieces_ptr + run)
    rows = tl.where((run == padding_idx)[:, None], 0.0, acc)
    out = out_ptr + run[:, None].to(tl.int64) * stride_out + offs_h[None, :]
    single = (active & (pieces == 1))[:, None] & h_mask[None, :]
    tl.store(out, rows.to(out_ptr.dtype.element_ty), mask=single)
    part = part_ptr + offs_p[:, None].to(tl.int64) * H + offs_h[None, :]
    tl.store(part, acc, mask=(active & (pieces > 1))[:, None] & h_mask[None, :])


@triton.jit
def _segment_finish_kernel(
    pieces_ptr, first_ptr, part_ptr, out_ptr, R, H, stride_out, padding_idx,
    BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    # Rows of S the first pass did not write: zeros for empty runs, the partials of a long run
    # summed in chunk order.
    offs_v = tl.program_id(0) * BLOCK_V + tl.arange(0, BLOCK_V)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    v_mask = offs_v < R
    h_mask = offs_h < H
    pieces = tl.load(pieces_ptr + offs_v, mask=v_mask, other=1)
    first = tl.load(first_ptr + offs_v, mask=v_mask, other=0)
    count = tl.where(pieces > 1, pieces, 0)
    acc = tl.zeros((BLOCK_V, BLOCK_H), dtype=tl.float32)
    for j in range(0, tl.max(count, axis=0)):
        part = part_ptr + (first + j)[:, None].to(tl.int64) * H + offs_h[None, :]
        acc += tl.load(part, mask=(j < count)[:, None] & h_mask[None, :], other=0.0)
    rows = tl.where((offs_v == padding_idx)[:, None], 0.0, acc)
    out = out_ptr + offs_v[:, None].to(tl.int64) * stride_out + offs_h[None, :]
    todo = (v_mask & (pieces != 1))[:, None] & h_mask[None, :]
    tl.store(out, rows.to(out_ptr.dtype.element_ty), mask=todo)


def segment_sum(
    x: torch.Tensor, ids: torch.Tensor, num_rows: int, dtype: torch.dtype,
    padding_idx: int = -1, chunk: int | None = None,
) -> torch.Tensor:  # fmt: skip
    """(num_rows, H) in ``dtype``: row v sums (in fp32, in a fixed order) the rows of ``x`` whose
    id is v; row ``padding_idx`` is zero. ``ids`` are int32; ids in ``[num_rows, ...)`` (the
    sentinel of :func:`masked_ids` when ``num_rows`` excludes it) are dropped.

    Stable sort, run bounds by ``searchsorted``; runs are cut into ``chunk``-row pieces summed
    side by side, so one frequent id does not serialise the kernel on a single program.
    """
    N, H = x.shape
    out = torch.empty((num_rows, H), device=x.device, dtype=dtype)
    chunk = chunk or 256
    sorted_ids, order = torch.sort(ids, stable=True)
    targets = torch.arange(num_rows + 1, device=x.device, dtype=torch.int32)
    bounds = torch.searchsorted(sorted_ids, targets, out_int32=True)
    pieces = (bounds[1:] - bounds[:-1] + (chunk - 1)) // chunk
    ends = torch.cumsum(pieces, 0, dtype=torch.int32)
    first = ends - pieces
    programs = triton.cdiv(N, chunk) + min(num_rows, N)  # at least the number of pieces
    slots = torch.arange(programs, device=x.device, dtype=torch.int32)
    piece_run = torch.searchsorted(ends, slots, right=True, out_int32=True)
    part = torch.empty((programs, H), device=x.device, dtype=torch.float32)
    if interpreting():  # few, large programs
        bp, bv, bh = 128, 128, _pow2(H, 16, 1024)
    else:
        bh = _pow2(H, 16, 256)
        bp = bv = 8192 // bh
    warps = 4 if bh <= 128 else 8
    if programs:
        grid = (triton.cdiv(programs, bp), triton.cdiv(H, bh))
        _launcher(_segment_pieces_kernel, x.is_cuda)[grid](
            order, bounds, pieces, first, piece_run, x, out, part,
            programs, num_rows, H, x.stride(0), out.stride(0), padding_idx,
            CHUNK=chunk, BLOCK_P=bp, BLOCK_H=bh, num_warps=warps,
        )  # fmt: skip
    _launcher(_segment_finish_kernel, x.is_cuda)[(triton.cdiv(num_rows, bv), triton.cdiv(H, bh))](
        pieces, first, part, out, num_rows, H, out.stride(0), padding_idx,
        BLOCK_V=bv, BLOCK_H=bh, num_warps=warps,
    )  # fmt: skip
    return out
