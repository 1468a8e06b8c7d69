"""Running an artifact's graphs: the torch.export program, ONNX Runtime, or AOTInductor.

Every runtime is a callable ``graph(*tensors) -> tuple[tensors]`` with the graph's recorded
input order, so the host code (preprocessing, beam search, CTC decoding) is one code path for
all of them.

What loading relies on, and why it is safe for files from elsewhere:

- ``onnx``: ONNX Runtime parses a protobuf; the models are self-contained (no external-data
  paths), and no custom-op library is registered.
- ``torch``: ``torch.export.load`` is *not* safe on its own. It reads the graph from JSON and
  the weights as raw bytes, but it also (1) unpickles tensor-subclass weights and constants
  and TorchBind objects, (2) retries the saved example inputs with ``weights_only=False`` when
  the safe load fails, and (3) resolves every node's target by ``getattr`` from the ``torch``,
  ``operator`` and ``math`` modules, so a crafted graph could call any function reachable from
  ``torch`` when it runs. :func:`check_program_archive` therefore reads the archive first and
  refuses anything but raw-byte weights and constants, example inputs that load with
  ``weights_only=True``, and node targets that are ops of the ``aten``, ``prims`` and
  ``mmembed`` namespaces or plain arithmetic on sizes.
- ``aoti``: an AOTInductor package is a compiled shared library: loading it runs native code.
  Use it for artifacts you built or trust; it is never chosen unless asked for.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

import mmembed.ops.embed_project  # noqa: F401  registers mmembed::embed_project (GPU-built graphs call it)
from mmembed.inference.artifact import (
    Artifact,
    ArtifactError,
    device_description,
    package_versions,
)

# "onnx-int8": ONNX Runtime on the int8 graphs where an artifact has them (speech encoders;
# not exact, mmembed.inference.export.quantize), the float ONNX graphs elsewhere
INT8_RUNTIME = "onnx-int8"
RUNTIMES = ("torch", "onnx", INT8_RUNTIME, "aoti")

_OP_NAMESPACES = ("aten", "prims", "mmembed")
# aten ops that touch files: no model graph needs them
_DENIED_OPS = ("from_file",)
_SIZE_ARITHMETIC = {
    "_operator": {
        "getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "neg", "pow", "eq", "ne",
        "lt", "le", "gt", "ge", "and_", "or_", "not_", "abs",
    },
    "math": {"ceil", "floor", "trunc", "sqrt"},
    "torch": {"sym_max", "sym_min", "sym_float", "sym_int", "sym_not", "sym_ite", "sym_sqrt",
              "sym_sum"},
}  # fmt: skip
_OP_TARGET = re.compile(r"^torch\.ops\.(\w+)\.(\w+)\.(\w+)$")


class Graph(Protocol):
    runtime: str

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]: ...


# --- compatibility -------------------------------------------------------------------------


def _release(version: str | None) -> tuple[int, ...]:
    """(major, minor, patch) of a version string such as ``2.11.0+cu130``."""
    numbers = re.findall(r"\d+", (version or "").split("+")[0])
    return tuple(int(n) for n in numbers[:3])


def check_compatible(artifact: Artifact, runtime: str, device: torch.device) -> None:
    """Refuse, naming the mismatch, a runtime that cannot run this artifact here."""
    manifest = artifact.manifest
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    available = manifest.get("runtimes", [])
    if runtime not in available:
        raise ArtifactError(
            f"{artifact.path}: holds no {runtime!r} graphs (it has {available}); export with "
            f"mmembed-export --runtime {','.join([*available, runtime])}"
        )
    built = manifest.get("versions", {})
    here = package_versions()
    if (
        runtime in ("torch", "aoti")
        and _release(built.get("torch"))[:2] != _release(here["torch"])[:2]
    ):
        raise ArtifactError(
            f"{artifact.path}: its {runtime} graphs were built with torch {built.get('torch')}, "
            f"this is torch {here['torch']}; torch.export programs load only in the torch "
            "release that wrote them: re-export with this torch, or use runtime='onnx'"
        )
    if runtime == "aoti":
        built_on = manifest.get("built_on", {})
        for name in ("torch", "triton"):
            if built.get(name) != here[name]:
                raise ArtifactError(
                    f"{artifact.path}: its AOTInductor package was compiled with {name} "
                    f"{built.get(name)}, this is {name} {here[name]}: re-export here, or use "
                    "runtime='torch'"
                )
        if device.type != "cuda" or not torch.cuda.is_available():
            raise ArtifactError(f"{artifact.path}: runtime='aoti' needs a CUDA device")
        arch = device_description(device)["arch"]
        if built_on.get("arch") != arch:
            raise ArtifactError(
                f"{artifact.path}: its AOTInductor package was compiled for {built_on.get('gpu')} "
                f"({built_on.get('arch')}), this GPU is {arch}: re-export on this GPU, or use "
                "runtime='torch'"
            )


# --- torch.export programs -----------------------------------------------------------------


def check_program_archive(data: bytes, source: str) -> None:
    """Refuse a ``torch.export.save`` archive that ``torch.export.load`` would unpickle from, or
    whose graph calls anything but tensor ops (see the module docstring)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        raise ArtifactError(f"{source}: not a torch.export archive ({err})") from err
    with archive:
        names = archive.namelist()
        models = [n for n in names if re.search(r"/models/[^/]+\.json$", n)]
        if not models:
            raise ArtifactError(f"{source}: not a torch.export archive (no models/*.json)")
        for name in names:
            if re.search(r"/data/(weights|constants)/[^/]+\.pt$", name):
                raise ArtifactError(f"{source}: legacy pickled weights ({name}); refusing to load")
        for name in names:
            if re.search(r"_(weights|constants)_config\.json$", name):
                for key, payload in json.loads(archive.read(name))["config"].items():
                    if payload.get("use_pickle") or str(payload.get("path_name", "")).startswith(
                        "custom_obj"
                    ):
                        raise ArtifactError(
                            f"{source}: {key} is stored as a pickle; refusing to load"
                        )
        for name in names:
            if "/data/sample_inputs/" in name:
                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception as err:
                    raise ArtifactError(
                        f"{source}: its example inputs do not load with weights_only=True "
                        f"({err}); refusing to load"
                    ) from err
        for name in models:
            for target in _node_targets(json.loads(archive.read(name))):
                if not _allowed_target(target):
                    raise ArtifactError(
                        f"{source}: the graph calls {target!r}, which is not a tensor op; "
                        "refusing to load"
                    )


def _node_targets(tree: Any):
    """Every node target of a serialised graph, nested graphs included."""
    if isinstance(tree, dict):
        if "target" in tree and "inputs" in tree and "outputs" in tree:
            yield tree["target"]
        for value in tree.values():
            yield from _node_targets(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _node_targets(value)


def _allowed_target(target: Any) -> bool:
    if not isinstance(target, str):
        return False
    match = _OP_TARGET.match(target)
    if match:
        namespace, op, _ = match.groups()
        return namespace in _OP_NAMESPACES and op not in _DENIED_OPS
    module, _, name = target.partition(".")
    return name in _SIZE_ARITHMETIC.get(module, ())


class TorchProgram:
    """A ``torch.export`` program, moved to ``device`` if it was exported elsewhere."""

    runtime = "torch"

    def __init__(self, data: bytes, source: str, device: torch.device, built_on: str):
        check_program_archive(data, source)
        try:
            with warnings.catch_warnings():
                # the weights are read-only views of the artifact's bytes until copied below
                warnings.filterwarnings("ignore", message="The given buffer is not writable")
                program = torch.export.load(io.BytesIO(data))
        except Exception as err:
            raise ArtifactError(f"{source}: torch.export.load failed ({err})") from err
        if torch.device(built_on).type != device.type:
            program = torch.export.passes.move_to_device_pass(program, device)
        self._module = program.module()
        self.device = device

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            outputs = self._module(*(t.to(self.device) for t in inputs))
        return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


# --- ONNX Runtime --------------------------------------------------------------------------


class OnnxGraph:
    """An ONNX model in an ONNX Runtime session (CPU, or CUDA when its provider is there)."""

    runtime = "onnx"

    def __init__(
        self,
        data: bytes,
        source: str,
        input_names: Sequence[str],
        device: torch.device,
        threads: int | None,
        runtime: str = "onnx",
    ):
        self.runtime = runtime
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(
                "runtime='onnx' needs ONNX Runtime: pip install onnxruntime==1.32.0"
            ) from err
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: ORT warns about every unused initializer
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ArtifactError(
                    f"{source}: this onnxruntime has no CUDA provider; install onnxruntime-gpu "
                    "or use runtime='torch' on CUDA"
                )
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = ort.InferenceSession(data, options, providers=providers)
        except Exception as err:  # ORT raises its own exception types
            raise ArtifactError(f"{source}: ONNX Runtime cannot load it ({err})") from err
        used = {i.name for i in self._session.get_inputs()}
        unknown = used - set(input_names)
        if unknown:
            raise ArtifactError(f"{source}: unexpected ONNX inputs {sorted(unknown)}")
        # inputs the graph does not read (pruned by the exporter) are not fed
        self._feeds = [(name, name in used) for name in input_names]
        self.device = device

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feeds = {
            name: tensor.detach().cpu().numpy()
            for (name, used), tensor in zip(self._feeds, inputs, strict=True)
            if used
        }
        outputs = self._session.run(None, feeds)
        return tuple(torch.from_numpy(o).to(self.device) for o in outputs)


# --- AOTInductor ---------------------------------------------------------------------------


class AotiPackage:
    """An AOTInductor package (compiled native code: trusted artifacts only)."""

    runtime = "aoti"

    def __init__(self, data: bytes, source: str, device: torch.device):
        from torch._inductor import aoti_load_package

        self._folder = tempfile.TemporaryDirectory(prefix="mmembed-aoti-")
        path = Path(self._folder.name) / "package.pt2"
        path.write_bytes(data)
        try:
            self._runner = aoti_load_package(str(path), device_index=device.index or 0)
        except Exception as err:
            raise ArtifactError(f"{source}: aoti_load_package failed ({err})") from err
        self.device = device

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            outputs = self._runner(*(t.to(self.device) for t in inputs))
        return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def load_graph(
    artifact: Artifact,
    name: str,
    runtime: str,
    device: torch.device,
    threads: int | None = None,
) -> Graph:
    """Graph ``name`` of ``artifact`` in ``runtime`` on ``device``."""
    spec = artifact.manifest["graphs"].get(name)
    if spec is None or runtime not in spec["files"]:
        raise ArtifactError(f"{artifact.path}: no {runtime} file for graph {name!r}")
    member = spec["files"][runtime]
    data = artifact.read(member)
    source = f"{artifact.path}:{member}"
    if runtime == "torch":
        return TorchProgram(data, source, device, artifact.manifest["built_on"]["type"])
    if runtime in ("onnx", INT8_RUNTIME):
        return OnnxGraph(data, source, spec["inputs"], device, threads, runtime)
    return AotiPackage(data, source, device)
