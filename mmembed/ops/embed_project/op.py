"""The fused embedding-projection registered as torch ops, ``mmembed::embed_project`` and its
backward ``mmembed::embed_project_backward``, with their autograd.

Both are ``torch.library.triton_op``s: on CUDA tensors their bodies launch the Triton kernels
through ``wrap_triton``, so ``torch.compile`` and AOTInductor see (and keep) the kernels; on other
devices, and whenever they are traced with fake tensors off CUDA, the bodies run the torch
reference, which doubles as the fake implementation for export. Under ``TRITON_INTERPRET=1`` real
CPU tensors go through the kernels too, which is how CI tests them without a GPU.
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import is_fake

from mmembed.kernels import embed_project as kernels
from mmembed.ops.embed_project import reference

__all__ = ["embed_project", "embed_project_backward", "check_ids", "uses_kernels"]


def uses_kernels(t: torch.Tensor) -> bool:
    """Whether the op runs its Triton kernels for tensors like ``t``."""
    if t.device.type == "cuda":
        return True
    return kernels.interpreting() and t.device.type == "cpu" and not is_fake(t)


def check_ids(ids: torch.Tensor, num_rows: int) -> None:
    """Raise ``IndexError`` naming the first id outside ``[0, num_rows)``.

    One reduction and one host sync; skipped for fake tensors (tracing), where the kernels'
    own masking still keeps every load inside the table.
    """
    if ids.numel() == 0 or is_fake(ids):
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


def _kernel_forward(ids, weight, proj_weight, bias, folded: bool) -> torch.Tensor:
    if proj_weight is None:
        return kernels.gather_rows(ids, weight)
    if folded:
        table = weight.to(proj_weight.dtype)
        table = (
            torch.addmm(bias, table, proj_weight.t())
            if bias is not None
            else table @ proj_weight.t()
        )
        return kernels.gather_rows(ids, table)
    return kernels.forward_direct(ids, weight, proj_weight, bias)


@torch.library.triton_op("mmembed::embed_project", mutates_args={})
def embed_project(
    ids: torch.Tensor,
    weight: torch.Tensor,
    proj_weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    padding_idx: int,
    folded: bool,
    deterministic: bool,
    check: bool,
) -> torch.Tensor:
    """``weight[ids] @ proj_weight.T + bias`` for 1-D ``ids`` (see :class:`SharedEmbedding`).

    ``padding_idx`` (-1 for none) and ``deterministic`` only affect the backward; ``folded``
    picks the strategy; ``check`` validates ids on the host first.
    """
    if check:
        check_ids(ids, weight.shape[0])
    if uses_kernels(ids):
        weight, ids = weight.contiguous(), ids.contiguous()
        proj_weight = proj_weight.contiguous() if proj_weight is not None else None
        return _kernel_forward(ids, weight, proj_weight, bias, folded)
    return reference.embed_project(ids, weight, proj_weight, bias)


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty((0,))


def _kernel_backward(grad, ids, weight, proj_weight, has_bias, padding_idx, folded, deterministic,
                     table_grad, proj_grad):  # fmt: skip
    num_rows = weight.shape[0]
    sorted_ids = None
    if deterministic and (folded or proj_weight is None or table_grad):
        sorted_ids, order, seg_end = kernels.sort_ids(ids)

    def reduce_by_id(x):  # (N, K) -> fp32 (V, K) with rows summed by id
        if deterministic:
            return kernels.segment_sum_rows(x, sorted_ids, order, seg_end, num_rows, dense=True)
        return kernels.scatter_add_rows(x, ids, num_rows)

    def finish_table(d_table):
        if 0 <= padding_idx < num_rows:
            d_table[padding_idx] = 0
        return d_table.to(weight.dtype)

    if proj_weight is None:
        return finish_table(reduce_by_id(grad)), None, None

    d_table = d_proj = d_bias = None
    if folded:
        d_folded = reduce_by_id(grad)  # dL/d(E W^T + b), fp32 (V, H)
        if table_grad:
            d_table = finish_table(d_folded @ proj_weight.to(torch.float32))
        if proj_grad:
            d_proj = (d_folded.t() @ weight.to(torch.float32)).to(proj_weight.dtype)
            d_bias = d_folded.sum(0).to(proj_weight.dtype) if has_bias else None
        return d_table, d_proj, d_bias

    if proj_grad:
        d_proj, d_bias = kernels.projection_weight_grad(grad, ids, weight, has_bias)
        d_proj = d_proj.to(proj_weight.dtype)
        d_bias = d_bias.to(proj_weight.dtype) if d_bias is not None else None
    if table_grad:
        if deterministic:
            run_sums = kernels.segment_sum_rows(
                grad, sorted_ids, order, seg_end, num_rows, dense=False
            )
            d_table = kernels.table_grad_from_segments(
                run_sums, sorted_ids, proj_weight, num_rows, padding_idx, weight.dtype
            )
        else:
            d_table = kernels.table_grad_atomic(grad, ids, proj_weight, num_rows, padding_idx)
            d_table = d_table.to(weight.dtype)
    return d_table, d_proj, d_bias


@torch.library.triton_op("mmembed::embed_project_backward", mutates_args={})
def embed_project_backward(
    grad: torch.Tensor,
    ids: torch.Tensor,
    weight: torch.Tensor,
    proj_weight: torch.Tensor | None,
    has_bias: bool,
    padding_idx: int,
    folded: bool,
    deterministic: bool,
    table_grad: bool,
    proj_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dE, dW, db)`` of :func:`embed_project`; a gradient not asked for comes back empty."""
    if uses_kernels(ids):
        grad, ids, weight = grad.contiguous(), ids.contiguous(), weight.contiguous()
        proj_weight = proj_weight.contiguous() if proj_weight is not None else None
        grads = _kernel_backward(grad, ids, weight, proj_weight, has_bias, padding_idx, folded,
                                 deterministic, table_grad, proj_grad)  # fmt: skip
    else:
        grads = reference.embed_project_backward(
            grad, ids, weight, proj_weight, has_bias, padding_idx, table_grad, proj_grad
        )
    return tuple(g if g is not None else _empty(weight) for g in grads)


def _setup_context(ctx, inputs, output):
    ids, weight, proj_weight, bias, padding_idx, folded, deterministic, _ = inputs
    ctx.save_for_backward(ids, weight, proj_weight)
    ctx.config = (bias is not None, padding_idx, folded, deterministic)


def _backward(ctx, grad):
    ids, weight, proj_weight = ctx.saved_tensors
    has_bias, padding_idx, folded, deterministic = ctx.config
    needs = ctx.needs_input_grad
    table_grad = needs[1]
    proj_grad = needs[2] or (has_bias and needs[3])
    d_table = d_proj = d_bias = None
    if table_grad or proj_grad:
        d_table, d_proj, d_bias = embed_project_backward(
            grad, ids, weight, proj_weight, has_bias, padding_idx, folded, deterministic,
            table_grad, proj_grad,
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
    )


embed_project.register_autograd(_backward, setup_context=_setup_context)
