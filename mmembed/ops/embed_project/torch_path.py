"""The op's plans in torch ops: the layer's torch backend (CPU, and CUDA where
:data:`cost_model.AUTO` picks it), and the body of the op wherever its kernels do not run.

:func:`forward` is differentiable, and its autograd *is* the sum-by-id backward: the folded
plan ``F.embedding(ids, T)`` with ``T = addmm(b, E, W.T)`` sums dY by id into S (the embedding
backward: sorted and deterministic on CUDA, serial on CPU), then the addmm backward gives
``dE = S @ W``, ``dW = S.T @ E``, ``db = S.sum(0)``. The direct plan is eager's. The layer calls
it under autograd (saving rows as eager does, no custom-op dispatch); the op, whose bodies run
below autograd, pairs it with the explicit :func:`backward`.

CPU GEMMs run in :func:`cost_model.cpu_gemm_dtype` (fp32 for bf16 on CPUs without native bf16;
the folded plan then also gathers and sums by id in fp32, more accurate than a bf16 embedding
backward). With ``mask`` (the id check was off), ids outside the table read a zero row and pass
no gradient to the table, as in the kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmembed.ops.embed_project.cost_model import cpu_gemm_dtype


def gemm_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    return cpu_gemm_dtype(dtype) if device.type == "cpu" else dtype


def _valid(ids: torch.Tensor, num_rows: int) -> torch.Tensor:
    return (ids >= 0) & (ids < num_rows)


def _rows(ids: torch.Tensor, table: torch.Tensor, mask: bool, padding_idx: int = -1,
          scale_grad_by_freq: bool = False, sparse: bool = False):  # fmt: skip
    """``table[ids]``, with zero rows for ids outside the table when ``mask`` (the layer never
    combines ``mask`` with ``scale_grad_by_freq`` here: masked ids would count as row 0)."""
    pad = padding_idx if padding_idx >= 0 else None
    if not mask:
        return F.embedding(ids, table, pad, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)
    valid = _valid(ids, table.shape[0])
    rows = F.embedding(torch.where(valid, ids, 0), table, pad, sparse=sparse)
    return torch.where(valid[..., None], rows, 0)


def _without_padding_grad(weight: torch.Tensor, padding_idx: int) -> torch.Tensor:
    # the padding row keeps its value but gets no gradient (nn.Embedding's padding_idx)
    if not (0 <= padding_idx < weight.shape[0] and weight.requires_grad):
        return weight
    row = torch.arange(weight.shape[0], device=weight.device)[:, None] == padding_idx
    return torch.where(row, weight.detach(), weight)


def forward(ids, weight, proj_weight, bias, fold: bool, mask: bool, padding_idx: int = -1,
            scale_grad_by_freq: bool = False, sparse: bool = False):  # fmt: skip
    """``weight[ids] @ proj_weight.T + bias`` for ids of any shape (a lookup when
    ``proj_weight`` is None), with ``nn.Embedding``'s padding row and the result in the
    projection's dtype. ``scale_grad_by_freq`` and ``sparse`` are ``F.embedding``'s, for the
    direct plan only (the folded one would scale dW too; the op's :func:`backward` scales it)."""
    options = dict(scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)
    if proj_weight is None:
        return _rows(ids, weight, mask, padding_idx, **options)
    out_dtype = proj_weight.dtype
    dtype = gemm_dtype(out_dtype, weight.device)
    w = proj_weight.to(dtype)
    b = bias.to(dtype) if bias is not None else None
    if not fold:
        rows = _rows(ids, weight, mask, padding_idx, **options).to(dtype)
        return F.linear(rows, w, b).to(out_dtype)
    table = _without_padding_grad(weight, padding_idx).to(dtype)
    table = torch.addmm(b, table, w.t()) if b is not None else table @ w.t()
    if dtype != out_dtype:  # round the table as a low-precision GEMM would
        table = table.to(out_dtype).to(dtype)
    if mask:  # ids outside the table read the projected zero row: the bias
        zero_row = b[None] if b is not None else table.new_zeros((1, table.shape[1]))
        table = torch.cat([table, zero_row])
        ids = torch.where(_valid(ids, weight.shape[0]), ids, weight.shape[0])
    return F.embedding(ids, table).to(out_dtype)


def bag_pool(ids, table, offsets, per_sample_weights, mode: str, include_last_offset: bool,
             padding_idx: int | None, scale_grad_by_freq: bool, sparse: bool) -> torch.Tensor:
    """``nn.EmbeddingBag``'s pooling of table rows (``F.embedding_bag`` never writes the N x D
    rows it pools)."""
    return F.embedding_bag(
        ids, table, offsets, mode=mode, per_sample_weights=per_sample_weights,
        include_last_offset=include_last_offset, padding_idx=padding_idx,
        scale_grad_by_freq=scale_grad_by_freq, sparse=sparse,
    )  # fmt: skip


def project(x: torch.Tensor, proj_weight: torch.Tensor | None, bias: torch.Tensor | None):
    """``x @ proj_weight.T + bias`` in the projection's dtype (GEMM in :func:`gemm_dtype`);
    ``x`` itself without a projection."""
    if proj_weight is None:
        return x
    dtype = gemm_dtype(proj_weight.dtype, x.device)
    b = bias.to(dtype) if bias is not None else None
    return F.linear(x.to(dtype), proj_weight.to(dtype), b).to(proj_weight.dtype)


def sum_by_id(x: torch.Tensor, ids: torch.Tensor, num_rows: int) -> torch.Tensor:
    """(num_rows, K): row v sums the rows of ``x`` whose id is v (ids in ``[0, num_rows)``).

    fp32 ``index_add_`` on CPU (serial, so repeatable); on CUDA the sort-based reduction of
    ``nn.Embedding``'s backward, which is deterministic (``index_add_`` there is atomic).
    """
    if x.device.type == "cuda":
        return torch.ops.aten.embedding_dense_backward(x, ids, num_rows, -1, False)
    out = torch.zeros((num_rows, x.shape[1]), device=x.device, dtype=torch.float32)
    return out.index_add_(0, ids, x.to(torch.float32))


def inverse_frequency(ids: torch.Tensor, num_rows: int) -> torch.Tensor:
    """(num_rows, 1) fp32: 1 / (times each row's id occurs in ``ids``), 1 for absent rows;
    ``nn.Embedding``'s ``scale_grad_by_freq`` applied to sums by id. ``ids`` in
    ``[0, num_rows]`` (an extra row for masked ids is counted and dropped)."""
    ids = ids.reshape(-1)
    # index_add_, not bincount: a static output shape for compile/export
    counts = torch.zeros(num_rows + 1, dtype=torch.int32, device=ids.device)
    counts.index_add_(0, ids, torch.ones_like(ids, dtype=torch.int32))
    return counts[:num_rows].clamp_min(1).to(torch.float32).reciprocal()[:, None]


def _table_grad(d_rows: torch.Tensor, weight: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """``d_rows`` (a fresh tensor) as dE: the table's dtype, the padding row zero."""
    d_table = d_rows.to(weight.dtype)
    if 0 <= padding_idx < weight.shape[0]:
        d_table[padding_idx] = 0
    return d_table


def backward(grad, ids, weight, proj_weight, has_bias, padding_idx, fold, mask, table_grad,
             proj_grad, scale_grad_by_freq=False):  # fmt: skip
    """``(dE, dW, db)`` of :func:`forward`; entries not asked for are None. With
    ``scale_grad_by_freq`` each row of dE is divided by its id's count (dW and db are not)."""
    num_rows = weight.shape[0]
    if mask:  # out-of-range ids go to one extra row, dropped from dE and dW
        ids = torch.where(_valid(ids, num_rows), ids, num_rows)
    sum_rows = num_rows + 1 if mask else num_rows
    scale = inverse_frequency(ids, num_rows) if scale_grad_by_freq and table_grad else 1.0
    if proj_weight is None:
        d_table = sum_by_id(grad, ids, sum_rows)[:num_rows] * scale
        return _table_grad(d_table, weight, padding_idx), None, None

    dtype = gemm_dtype(proj_weight.dtype, weight.device)
    d_table = d_proj = d_bias = None
    if fold:
        sums = sum_by_id(grad, ids, sum_rows)  # S: dL/dT, the extra row included (for db)
        s = sums[:num_rows].to(dtype)
        if table_grad:
            d_table = _table_grad((s * scale).to(dtype) @ proj_weight.to(dtype), weight,
                                  padding_idx)  # fmt: skip
        if proj_grad:
            d_proj = (s.t() @ weight.to(dtype)).to(proj_weight.dtype)
            if has_bias:
                d_bias = sums.sum(0, dtype=torch.float32).to(proj_weight.dtype)
        return d_table, d_proj, d_bias

    g = grad.to(dtype)
    if table_grad:
        d_rows = g @ proj_weight.to(dtype)
        d_table = sum_by_id(d_rows, ids, sum_rows)[:num_rows] * scale
        d_table = _table_grad(d_table, weight, padding_idx)
    if proj_grad:
        rows = _rows(ids, weight, mask)
        d_proj = (g.t() @ rows.to(dtype)).to(proj_weight.dtype)
        if has_bias:
            d_bias = grad.sum(0, dtype=torch.float32).to(proj_weight.dtype)
    return d_table, d_proj, d_bias
