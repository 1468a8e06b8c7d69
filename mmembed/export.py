"""Export helpers: ``torch.export`` programs and single-file ONNX models containing mmembed ops.

mmembed's ops have no ONNX counterparts, so before ONNX conversion each is decomposed by its
own lowering (``mmembed/ops/<op>/onnx.py``). A whole trained model (graphs, tokenizer,
preprocessing, decoding settings, self-test) is packaged by ``mmembed-export``
(:mod:`mmembed.inference`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from mmembed.ops.embed_project import onnx as embed_project_onnx

# ONNX opset of the exported models: 18 is the newest every ONNX Runtime >= 1.14 runs, and has
# every operator the models use (STFT for the log-mel front end included).
OPSET_VERSION = 18


def decomposition_table() -> dict:
    """``ExportedProgram.run_decompositions`` entries that lower every mmembed op to aten ops."""
    return {**embed_project_onnx.decomposition_table()}


def export_program(model: torch.nn.Module, args: tuple, dynamic_shapes: Any = None):
    """``torch.export.export`` of ``model`` in eval mode (the mmembed op stays in the graph)."""
    return torch.export.export(model.eval(), args, dynamic_shapes=dynamic_shapes)


def onnx_bytes(
    program: torch.export.ExportedProgram,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset_version: int = OPSET_VERSION,
) -> bytes:
    """One self-contained ONNX model (weights inside) of an exported program, its mmembed ops
    lowered to ``Gather`` + ``MatMul`` + ``Add``; inputs and outputs renamed if names are
    given."""
    decomposed = program.run_decompositions(decomposition_table())
    onnx_program = torch.onnx.export(
        decomposed,
        dynamo=True,
        opset_version=opset_version,
        external_data=False,
        input_names=list(input_names) if input_names else None,
        output_names=list(output_names) if output_names else None,
        verbose=False,
    )
    buffer = io.BytesIO()
    onnx_program.save(buffer, external_data=False)
    return buffer.getvalue()


def export_onnx(
    model: torch.nn.Module,
    args: tuple,
    path: str | PathLike,
    dynamic_shapes: Any = None,
    opset_version: int = OPSET_VERSION,
) -> Path:
    """Write ``model`` as one self-contained ONNX file (weights inside) and return its path."""
    data = onnx_bytes(export_program(model, args, dynamic_shapes), opset_version=opset_version)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
