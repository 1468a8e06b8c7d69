"""Export helpers: ``torch.export`` programs and single-file ONNX models containing mmembed ops.

mmembed's ops have no ONNX counterparts, so before ONNX conversion each is decomposed by its
own lowering (``mmembed/ops/<op>/onnx.py``).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import torch

from mmembed.ops.embed_project import onnx as embed_project_onnx


def decomposition_table() -> dict:
    """``ExportedProgram.run_decompositions`` entries that lower every mmembed op to aten ops."""
    return {**embed_project_onnx.decomposition_table()}


def export_program(model: torch.nn.Module, args: tuple, dynamic_shapes: Any = None):
    """``torch.export.export`` of ``model`` in eval mode (the mmembed op stays in the graph)."""
    return torch.export.export(model.eval(), args, dynamic_shapes=dynamic_shapes)


def export_onnx(
    model: torch.nn.Module,
    args: tuple,
    path: str | PathLike,
    dynamic_shapes: Any = None,
    opset_version: int = 18,
) -> Path:
    """Write ``model`` as one self-contained ONNX file (weights inside) and return its path."""
    program = export_program(model, args, dynamic_shapes).run_decompositions(decomposition_table())
    onnx_program = torch.onnx.export(
        program, args, dynamo=True, opset_version=opset_version, external_data=False
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_program.save(str(path), external_data=False)
    return path
