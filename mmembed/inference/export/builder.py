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
from mmembed.inference.export.quantize import quantize_int8
from mmembed.inference.export.rebuild import ExportError, TrainedModel
from mmembed.inference.predictor import SELFTEST, from_artifact
from mmembed.inference.runtimes import INT8_RUNTIME, RUNTIMES

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
        onnx_dynamic_shapes: that form's dynamic shapes, where they are narrower (the speech
            encoder's ONNX graph takes whole hops of samples); default ``dynamic_shapes``.
    """

    module: nn.Module
    example: tuple[torch.Tensor, ...]
    dynamic_shapes: tuple[Any, ...]
    inputs: Sequence[str]
    outputs: Sequence[str]
    sample: tuple[torch.Tensor, ...]
    onnx_module: nn.Module | None = None
    onnx_dynamic_shapes: tuple[Any, ...] | None = None


@dataclass
class ExportPlan:
    """What a task exports: graphs, the predictor's config, tensors and resource files."""

    task: str
    graphs: dict[str, GraphSpec]
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    # graphs offered in int8 (runtime "onnx-int8"), each with the weight-name patterns kept
    # float (mmembed.inference.export.quantize)
    int8_graphs: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _to(values: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(value.to(device) for value in values)


def _outputs(result: Any) -> tuple[torch.Tensor, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def _int8_tolerance(
    data: bytes, spec: GraphSpec, expected: tuple[torch.Tensor, ...]
) -> dict[str, float]:
    """The int8 graph's self-test tolerance, from its differences from the eager outputs on
    the samples here: 4x the largest (int8 kernels round differently on other CPUs) and 2x
    the mean, each plus 0.01. The mean is what tells a damaged graph from rounding: int8
    moves every value a little (the default recogniser's log-probabilities by 0.33 on
    average, 1.2 at most), a swapped or wrong weight moves most of them by much more."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    used = {i.name for i in session.get_inputs()}
    feeds = {
        name: value.cpu().numpy()
        for name, value in zip(spec.inputs, spec.sample, strict=True)
        if name in used
    }
    largest = mean = 0.0
    for got, want in zip(session.run(None, feeds), expected, strict=True):
        if want.is_floating_point():
            difference = (torch.from_numpy(got) - want.cpu()).abs()
            largest = max(largest, float(difference.max()))
            mean = max(mean, float(difference.mean()))
    return {
        "rtol": 0.0,
        "atol": round(4 * largest + 0.01, 4),
        "mean_atol": round(2 * mean + 0.01, 4),
    }


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
    if INT8_RUNTIME in runtimes and not plan.int8_graphs:
        raise ExportError(
            f"--runtime {INT8_RUNTIME}: a {plan.task} model has no int8 graphs (they are "
            "offered for speech recognisers, where their accuracy is measured)"
        )
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
        onnx_data = None
        if "onnx" in runtimes or INT8_RUNTIME in runtimes:
            onnx_source = program
            if spec.onnx_module is not None:
                onnx_module = spec.onnx_module.to(device).eval()
                onnx_source = export_program(
                    onnx_module,
                    _to(spec.example, device),
                    spec.onnx_dynamic_shapes or spec.dynamic_shapes,
                )
            onnx_data = onnx_bytes(onnx_source, spec.inputs, spec.outputs)
        if "onnx" in runtimes or (INT8_RUNTIME in runtimes and name not in plan.int8_graphs):
            files["onnx"] = f"graphs/{name}.onnx"
            members[files["onnx"]] = onnx_data
        if "aoti" in runtimes:
            files["aoti"] = f"graphs/{name}.aoti.pt2"
            members[files["aoti"]] = _aoti_package(program, name)
        with torch.no_grad():
            expected = _outputs(module(*_to(spec.sample, device)))
        if len(expected) != len(spec.outputs):
            raise ValueError(f"graph {name!r} gives {len(expected)} outputs, named {spec.outputs}")
        tolerance = {}
        if INT8_RUNTIME in runtimes:
            if name in plan.int8_graphs:
                files[INT8_RUNTIME] = f"graphs/{name}.int8.onnx"
                int8_data = quantize_int8(onnx_data, plan.int8_graphs[name])
                members[files[INT8_RUNTIME]] = int8_data
                tolerance[INT8_RUNTIME] = _int8_tolerance(int8_data, spec, expected)
            else:  # the float graph serves both
                files[INT8_RUNTIME] = files["onnx"]
        for index, value in enumerate(spec.sample):
            selftest[f"{name}.input.{index}"] = value
        for index, value in enumerate(expected):
            selftest[f"{name}.output.{index}"] = value
        graphs[name] = {"inputs": list(spec.inputs), "outputs": list(spec.outputs), "files": files}
        if tolerance:
            graphs[name]["tolerance"] = tolerance
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
