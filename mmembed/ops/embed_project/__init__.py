"""``mmembed::embed_project``: embedding lookup fused with a linear projection,
``y = E[ids] @ W.T + b``. Every piece of the op, side by side (Liger-Kernel's layout):

- ``kernels/embed_project.py`` (installed as ``mmembed.kernels.embed_project``): the Triton
  kernels, forward and backward;
- :mod:`.op`: the ``triton_op`` registrations and their autograd, the host-side id check;
- :mod:`.reference`: the torch reference (the semantics, the CPU path, the fake
  implementation for tracing, and what every kernel is tested against);
- :mod:`.cost_model`: the strategy choice and the roofline limits, per device;
- :mod:`.onnx`: the lowering for ONNX export.

The public face is :class:`mmembed.SharedEmbedding`; tests mirror this folder in
``tests/ops/embed_project/``.
"""

from mmembed.ops.embed_project.op import (
    check_ids,
    embed_project,
    embed_project_backward,
    uses_kernels,
)

__all__ = ["check_ids", "embed_project", "embed_project_backward", "uses_kernels"]
