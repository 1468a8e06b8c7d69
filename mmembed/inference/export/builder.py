"""Turning a trained task into an artifact: export each graph for each runtime, record the
eager model's outputs on sample inputs, and check the result by loading it back.

The per-task exporters (:mod:`.speech`, :mod:`.captioning`, :mod:`.video`,
:mod:`.multimodal`) describe their graphs and metadata as an :class:`ExportPlan`;
:func:`build_artifact` does the rest the same way for all of them.
"""

from __future__ import annotations

import datetime
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmembed.export import export_program, onnx_bytes
from mmembed.inference.artifact import (
    Artifact,
    device_description,
    json_bytes,
    package_versions,
    program_bytes,
    tensor_bytes,
)
from mmembed.inference.export.rebuild import ExportError, TrainedModel
from mmembed.inference.predictor import SELFTEST, from_artifact
from mmembed.inference.runtimes import RUNTIMES

log = logging.getLogger(__name__)


@dataclass
class GraphSpec:
    """One exported graph.

    Attributes:
        module: the eager module (eval mode) whose ``forward`` is the graph.
        example: inputs to trace with; dynamic sizes must not be 0 or 1 here (torch.export
            specialises those), and should differ between dimensions.
        dynamic_shapes: ``torch.export`` dynamic shapes, one entry per input.
        inputs, outputs: names (the ONNX graph's, and the self-test's messages).
        sample: the self-test inputs (small).
        onnx_module: the same function in a form ONNX Runtime runs faster, exported for the
            ONNX graph instead of ``module`` (its self-test still compares with ``module``).
    """

    module: nn.Module
    example: tuple[torch.Tensor, ...]
    dynamic_shapes: tuple[Any, ...]
    inputs: Sequence[str]
    outputs: Sequence[str]
    sample: tuple[torch.Tensor, ...]
    onnx_module: nn.Module | None = None


@dataclass
class ExportPlan:
    """What a task exports: graphs, the predictor's config, tensors and resource files."""

    task: str
    graphs: dict[str, GraphSpec]
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def _to(values: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(value.to(device) for value in values)


def _outputs(result: Any) -> tuple[torch.Tensor, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def _aoti_package(program: torch.export.ExportedProgram, name: str) -> bytes:
    from torch._inductor import aoti_compile_and_package

    with tempfile.TemporaryDirectory(prefix="mmembed-aoti-") as folder:
        path = Path(folder) / f"{name}.pt2"
        aoti_compile_and_package(program, package_path=str(path))
        return path.read_bytes()


def build_artifact(
    plan: ExportPlan,
    trained: TrainedModel,
    out: Path,
    runtimes: Sequence[str] = ("torch", "onnx"),
    device: str | torch.device = "cpu",
) -> Artifact:
    """Export every graph of ``plan`` for ``runtimes`` on ``device`` into an in-memory
    :class:`~mmembed.inference.artifact.Artifact` (named ``out``; not written yet)."""
    device = torch.device(device)
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise ValueError(f"unknown runtime(s) {unknown}; expected some of {RUNTIMES}")
    if "aoti" in runtimes and device.type != "cuda":
        raise ExportError(
            "--runtime aoti compiles AOTInductor packages for CUDA: add --device cuda"
        )
    members: dict[str, bytes] = {}
    selftest: dict[str, torch.Tensor] = {}
    graphs: dict[str, Any] = {}
    for name, spec in plan.graphs.items():
        module = spec.module.to(device).eval()
        log.info("exporting graph %r", name)
        program = export_program(module, _to(spec.example, device), spec.dynamic_shapes)
        files = {}
        if "torch" in runtimes:
            files["torch"] = f"graphs/{name}.pt2"
            members[files["torch"]] = program_bytes(program)
        if "onnx" in runtimes:
            files["onnx"] = f"graphs/{name}.onnx"
            onnx_source = program
            if spec.onnx_module is not None:
                onnx_module = spec.onnx_module.to(device).eval()
                onnx_source = export_program(
                    onnx_module, _to(spec.example, device), spec.dynamic_shapes
                )
            members[files["onnx"]] = onnx_bytes(onnx_source, spec.inputs, spec.outputs)
        if "aoti" in runtimes:
            files["aoti"] = f"graphs/{name}.aoti.pt2"
            members[files["aoti"]] = _aoti_package(program, name)
        with torch.no_grad():
            expected = _outputs(module(*_to(spec.sample, device)))
        if len(expected) != len(spec.outputs):
            raise ValueError(f"graph {name!r} gives {len(expected)} outputs, named {spec.outputs}")
        for index, value in enumerate(spec.sample):
            selftest[f"{name}.input.{index}"] = value
        for index, value in enumerate(expected):
            selftest[f"{name}.output.{index}"] = value
        graphs[name] = {"inputs": list(spec.inputs), "outputs": list(spec.outputs), "files": files}
    members["config.json"] = json_bytes({"task": plan.task, **plan.config})
    members[SELFTEST] = tensor_bytes(selftest)
    if plan.tensors:
        members["tensors.safetensors"] = tensor_bytes(plan.tensors)
    members.update(plan.files)
    manifest = {
        "task": plan.task,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "built_on": device_description(device),
        "runtimes": list(runtimes),
        "graphs": graphs,
        "source": {
            "checkpoint": str(trained.checkpoint),
            "checkpoint_sha256": trained.checkpoint_sha256,
            "run_dir": str(trained.run_dir) if trained.run_dir else None,
        },
        "run_config": trained.run_config,
    }
    return Artifact(out, manifest, members)


def verify(artifact: Artifact, runtimes: Sequence[str], device: str | torch.device) -> None:
    """Load ``artifact`` in every runtime it holds (the self-test included), so an export that
    would fail or miscompute at serving time fails here instead."""
    for runtime in runtimes:
        log.info("checking the %s runtime", runtime)
        from_artifact(artifact, runtime=runtime, device=device)
