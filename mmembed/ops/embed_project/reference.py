"""Torch reference implementations of the fused embedding-projection op.

They define the op's semantics (``nn.Embedding`` followed by ``nn.Linear``), run it wherever the
Triton kernels do not (CPU, tracing for export), and are what the kernel tests compare against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def embed_project(
    ids: torch.Tensor,
    weight: torch.Tensor,
    proj_weight: torch.Tensor | None,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """``weight[ids] @ proj_weight.T + bias``; a plain lookup when ``proj_weight`` is None.

    With a projection the result has the projection's dtype (as ``nn.Linear`` under autocast).
    """
    rows = F.embedding(ids, weight)
    if proj_weight is None:
        return rows
    return F.linear(rows.to(proj_weight.dtype), proj_weight, bias)


def embed_project_backward(
    grad: torch.Tensor,
    ids: torch.Tensor,
    weight: torch.Tensor,
    proj_weight: torch.Tensor | None,
    has_bias: bool,
    padding_idx: int,
    table_grad: bool,
    proj_grad: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients ``(dE, dW, db)`` of :func:`embed_project`; the padding row of dE is zero.

    Entries not asked for (or without a parameter) are None.
    """
    num_rows = weight.shape[0]
    d_table = d_proj = d_bias = None
    if table_grad:
        d_rows = grad if proj_weight is None else grad @ proj_weight
        acc = torch.promote_types(weight.dtype, torch.float32)  # sums in fp32 at least
        d_table = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        d_table.index_add_(0, ids, d_rows.to(acc))
        if 0 <= padding_idx < num_rows:
            d_table[padding_idx] = 0
        d_table = d_table.to(weight.dtype)
    if proj_grad and proj_weight is not None:
        rows = F.embedding(ids, weight).to(grad.dtype)
        d_proj = (grad.t() @ rows).to(proj_weight.dtype)
        if has_bias:
            d_bias = grad.sum(0).to(proj_weight.dtype)
    return d_table, d_proj, d_bias
