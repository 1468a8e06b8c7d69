"""ONNX lowering of ``mmembed::embed_project`` and ``mmembed::checked_ids``: the ops have no ONNX
counterparts, so exported programs are decomposed into torch ops first (``Gather`` + ``MatMul``
+ ``Add`` in the ONNX graph). ONNX has no way to raise an error naming an id: the check becomes
a cast, and onnxruntime's ``Gather`` itself rejects ids at or above the table size (it accepts
-V..-1, counting from the end)."""

from __future__ import annotations

import torch

from mmembed.ops.embed_project import quantized, reference
from mmembed.ops.embed_project.op import checked_ids, embed_project


def _embed_project_decomposition(ids, weight, proj_weight, bias, *_config):
    return reference.embed_project(ids, weight, proj_weight, bias)


def _checked_ids_decomposition(ids, num_rows):
    return ids.to(torch.int32)


def decomposition_table() -> dict:
    """``ExportedProgram.run_decompositions`` entries that lower the ops to aten ops."""
    return {
        embed_project._opoverload: _embed_project_decomposition,
        checked_ids._opoverload: _checked_ids_decomposition,
        **quantized.decomposition_table(),
    }
