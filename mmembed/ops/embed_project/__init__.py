"""``mmembed::embed_project``: embedding lookup fused with a linear projection,
``y = E[ids] @ W.T + b``. Every piece of the op, side by side (Liger-Kernel's layout):

- ``kernels/embed_project.py`` (installed as ``mmembed.kernels.embed_project``): the Triton
  kernels (row gather, gather-fused GEMM, reductions by id);
- :mod:`.op`: the ``triton_op`` registrations and their autograd, the id check op;
- :mod:`.torch_path`: the same plans in torch ops (CPU, the torch path on CUDA, tracing);
- :mod:`.reference`: the torch reference (the semantics every path is tested against);
- :mod:`.cost_model`: shape classes, the plan per device (the ``backend="auto"`` table) and the
  roofline limits;
- :mod:`.quantized`: int8/int4 tables with per-row scales and ``mmembed::quantized_rows``, the
  gather that dequantises them;
- :mod:`.onnx`: the lowering for ONNX export.

The public face is :class:`mmembed.SharedEmbedding`; tests mirror this folder in
``tests/ops/embed_project/``.
"""

from mmembed.ops.embed_project import torch_path
from mmembed.ops.embed_project.op import (
    check_ids,
    checked_ids,
    embed_project,
    embed_project_backward,
    uses_kernels,
)

__all__ = [
    "check_ids",
    "checked_ids",
    "embed_project",
    "embed_project_backward",
    "torch_path",
    "uses_kernels",
]
