"""ONNX lowering of ``mmembed::embed_project``: the op has no ONNX counterpart, so exported
programs are decomposed into its torch reference first (``Gather`` + ``MatMul`` + ``Add`` in the
ONNX graph)."""

from __future__ import annotations

from mmembed.ops.embed_project import reference
from mmembed.ops.embed_project.op import embed_project


def _embed_project_decomposition(ids, weight, proj_weight, bias, *_config):
    return reference.embed_project(ids, weight, proj_weight, bias)


def decomposition_table() -> dict:
    """``ExportedProgram.run_decompositions`` entries that lower the op to aten ops."""
    return {embed_project._opoverload: _embed_project_decomposition}
