"""The fused embedding-projection registered as torch ops: ``mmembed::embed_project``, its
backward ``mmembed::embed_project_backward``, and the id check ``mmembed::checked_ids``.

``embed_project`` and its backward are ``torch.library.triton_op``s. With ``kernels`` set and
tensors on CUDA, their bodies compose the Triton kernels (launched through ``wrap_triton``) with
plain ``torch.mm``/``addmm`` GEMMs into the plan of the cost model, so ``torch.compile`` and
AOTInductor see and keep every piece; otherwise, and whenever they are traced with fake tensors
off CUDA, the bodies run the same plan in torch ops (:mod:`.torch_path`), which doubles as the
fake implementation for export. Under ``TRITON_INTERPRET=1`` real CPU tensors go through the
kernels too, which is how CI tests them without a GPU.

``checked_ids`` is an opaque ``custom_op``: compiled and exported graphs keep it as a call, so
an out-of-range id raises the same ``IndexError`` (naming the id and its position) there as in
eager mode. It is the one host synchronisation of the layer, and optional.
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import is_fake

from mmembed.kernels import embed_project as kernels
from mmembed.ops.embed_project import cost_model, torch_path

__all__ = ["checked_ids", "embed_project", "embed_project_backward", "check_ids", "uses_kernels"]


def uses_kernels(t: torch.Tensor) -> bool:
    """Whether the op can run its Triton kernels for tensors like ``t``."""
    if t.device.type == "cuda":
        return True
    return kernels.interpreting() and t.device.type == "cpu" and not is_fake(t)


def check_ids(ids: torch.Tensor, num_rows: int) -> None:
    """Raise ``IndexError`` naming the first id outside ``[0, num_rows)`` and its position.

    One reduction and one host sync (eager mode and the body of :func:`checked_ids`, so always
    on real tensors).
    """
    if ids.numel() == 0:
        return
    lo, hi = torch.aminmax(ids)
    if int(lo) >= 0 and int(hi) < num_rows:
        return
    flat = ids.reshape(-1)
    bad_pos = int(torch.nonzero((flat < 0) | (flat >= num_rows))[0, 0])
    bad = int(flat[bad_pos])
    where = tuple(int(i) for i in torch.unravel_index(torch.tensor(bad_pos), ids.shape))
    raise IndexError(
        f"id {bad} at position {where if ids.dim() > 1 else bad_pos} is out of range for an "
        f"embedding table of {num_rows} rows (valid ids are 0..{num_rows - 1})"
    )


@torch.library.custom_op(
    "mmembed::checked_ids", mutates_args=(), tags=(torch.Tag.cudagraph_unsafe,)
)
def checked_ids(ids: torch.Tensor, num_rows: int) -> torch.Tensor:
    """``ids`` as int32 after :func:`check_ids` (the kernels' index type; its result feeds the
    lookup, so no compiler drops the check)."""
    check_ids(ids, num_rows)
    return ids.to(torch.int32, copy=True)


@checked_ids.register_fake
def _checked_ids_fake(ids, num_rows):
    return torch.empty_like(ids, dtype=torch.int32)


def _direct_forward(ids, weight, proj_weight, bias) -> torch.Tensor:
    spec = cost_model.spec_for(ids.device)
    if cost_model.table_entry(cost_model.DIRECT_FORWARD, spec) == "fused":
        return kernels.forward_direct(ids, weight, proj_weight, bias)
    rows = kernels.gather_rows(ids, weight, dtype=proj_weight.dtype)
    return torch.addmm(bias, rows, proj_weight.t()) if bias is not None else rows @ proj_weight.t()


def _kernel_forward(ids, weight, proj_weight, bias, fold: bool) -> torch.Tensor:
    if proj_weight is None:
        return kernels.gather_rows(ids, weight)
    if not fold:
        return _direct_forward(ids, weight, proj_weight, bias)
    table, w_t = weight.to(proj_weight.dtype), proj_weight.t()
    table = torch.addmm(bias, table, w_t) if bias is not None else table @ w_t
    # an id outside the table reads the projected zero row: the bias
    return kernels.gather_rows(ids, table, fill=bias)


@torch.library.triton_op("mmembed::embed_project", mutates_args={})
def embed_project(
    ids: torch.Tensor,
    weight: torch.Tensor,
    proj_weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    padding_idx: int,
    fold: bool,
    kernels: bool,
    mask: bool,
    scale_grad_by_freq: bool = False,
) -> torch.Tensor:
    """``weight[ids] @ proj_weight.T + bias`` for 1-D ``ids`` (see :class:`SharedEmbedding`).

    ``padding_idx`` (-1 for none) and ``scale_grad_by_freq`` only affect the backward;
    ``fold`` picks the plan, ``kernels`` the Triton kernels where they can run. ``mask``: the ids
    were not checked, and any outside the table read as a zero row (the output is the bias) in
    every path; without it the caller guarantees valid ids (the kernels still never read
    outside the table).
    """
    if kernels and uses_kernels(ids):
        weight, ids = weight.contiguous(), ids.contiguous()
        proj_weight = proj_weight.contiguous() if proj_weight is not None else None
        return _kernel_forward(ids, weight, proj_weight, bias, fold)
    return torch_path.forward(ids, weight, proj_weight, bias, fold, mask, padding_idx)


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty((0,))


def _kernel_backward(grad, ids, weight, proj_weight, has_bias, padding_idx, fold, mask,
                     table_grad, proj_grad, scale_grad_by_freq):  # fmt: skip
    num_rows = weight.shape[0]
    ids = kernels.masked_ids(ids, num_rows)  # int32; row num_rows collects out-of-range ids
    # that extra row of S (for db) is needed only when the ids were not checked
    sum_rows = num_rows + 1 if mask else num_rows
    spec = cost_model.spec_for(grad.device)
    onehot = sum_rows <= cost_model.onehot_rows(spec, cost_model.DTYPE_NAMES[grad.dtype])
    scale = None
    if scale_grad_by_freq and table_grad:  # nn.Embedding's: dE rows / their id's count
        scale = torch_path.inverse_frequency(ids, num_rows)

    def sum_by_id(x, rows, dtype, pad, scaled=False):  # (rows, K): x summed by id, row pad zero
        if not onehot and not scaled:
            return kernels.segment_sum(x, ids, rows, dtype, pad)
        if onehot:
            sums = kernels.onehot_sum(x, ids, rows)
            if 0 <= pad < rows:
                sums[pad] = 0  # a fresh tensor; a filled index would cost a host-to-device copy
        else:
            sums = kernels.segment_sum(x, ids, rows, torch.float32, pad)
        return (sums * scale if scaled else sums).to(dtype)

    if proj_weight is None:
        d_table = sum_by_id(grad, num_rows, weight.dtype, padding_idx, scale is not None)
        return d_table, None, None

    d_table = d_proj = d_bias = None
    if fold:
        sums = sum_by_id(grad, sum_rows, proj_weight.dtype, -1)  # S = dL/dT (+ extra row)
        s = sums[:num_rows]
        if table_grad:
            s_table = s if scale is None else (s * scale).to(s.dtype)
            d_table = (s_table @ proj_weight).to(weight.dtype)
            if 0 <= padding_idx < num_rows:
                d_table[padding_idx] = 0
        if proj_grad:
            d_proj = s.t() @ weight.to(proj_weight.dtype)
            d_bias = sums.sum(0, dtype=torch.float32).to(proj_weight.dtype) if has_bias else None
        return d_table, d_proj, d_bias

    if table_grad:  # dX = dY @ W by cuBLAS, summed by id into every row of dE once
        d_table = sum_by_id(grad @ proj_weight, num_rows, weight.dtype, padding_idx,
                            scale is not None)  # fmt: skip
    if proj_grad:
        rows = kernels.gather_rows(ids, weight, dtype=proj_weight.dtype)
        d_proj = grad.t() @ rows
        d_bias = grad.sum(0, dtype=torch.float32).to(proj_weight.dtype) if has_bias else None
    return d_table, d_proj, d_bias


@torch.library.triton_op("mmembed::embed_project_backward", mutates_args={})
def embed_project_backward(
    grad: torch.Tensor,
    ids: torch.Tensor,
    weight: torch.Tensor,
    proj_weight: torch.Tensor | None,
    has_bias: bool,
    padding_idx: int,
    fold: bool,
    kernels: bool,
    mask: bool,
    table_grad: bool,
    proj_grad: bool,
    scale_grad_by_freq: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dE, dW, db)`` of :func:`embed_project`; a gradient not asked for comes back empty."""
    args = (has_bias, padding_idx, fold, mask, table_grad, proj_grad, scale_grad_by_freq)
    if kernels and uses_kernels(ids):
        grad, ids, weight = grad.contiguous(), ids.contiguous(), weight.contiguous()
        proj_weight = proj_weight.contiguous() if proj_weight is not None else None
        grads = _kernel_backward(grad, ids, weight, proj_weight, *args)
    else:
        grads = torch_path.backward(grad, ids, weight, proj_weight, *args)
    return tuple(g if g is not None else _empty(weight) for g in grads)


def _setup_context(ctx, inputs, output):
    ids, weight, proj_weight, bias, padding_idx, fold, use_kernels, mask, scale = inputs
    ctx.save_for_backward(ids, weight, proj_weight)
    ctx.config = (bias is not None, padding_idx, fold, use_kernels, mask, scale)


def _backward(ctx, grad):
    ids, weight, proj_weight = ctx.saved_tensors
    has_bias, padding_idx, fold, use_kernels, mask, scale = ctx.config
    needs = ctx.needs_input_grad
    table_grad = needs[1]
    proj_grad = needs[2] or (has_bias and needs[3])
    d_table = d_proj = d_bias = None
    if table_grad or proj_grad:
        d_table, d_proj, d_bias = embed_project_backward(
            grad, ids, weight, proj_weight, has_bias, padding_idx, fold, use_kernels, mask,
            table_grad, proj_grad, scale,
        )  # fmt: skip
    return (
        None,
        d_table if needs[1] else None,
        d_proj if needs[2] else None,
        d_bias if needs[3] else None,
        None,
        None,
        None,
        None,
        None,
    )


embed_project.register_autograd(_backward, setup_context=_setup_context)
