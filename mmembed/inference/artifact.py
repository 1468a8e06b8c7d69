"""The ``.mmembed`` artifact: one zip file holding everything a trained model needs to run.

Layout (every member listed with its size and SHA-256 in the manifest)::

    manifest.json          format version, versions of the libraries that built it, the device
                           and GPU it was built for, the run's config, the checkpoint's hash,
                           the graphs and their files, and the member table
    config.json            what the predictor needs: task, tokenizer, preprocessing, decoding,
                           class names, graph signatures
    tensors.safetensors    label embeddings and other tensors the predictor reads
    selftest.safetensors   sample inputs of each graph and the outputs the eager model gave
    graphs/<name>.pt2      torch.export programs (torch.export.save)
    graphs/<name>.onnx     the same graphs as self-contained ONNX models
    graphs/<name>.aoti.pt2 AOTInductor packages (CUDA builds)
    files/<name>           decoding resources (lexicon, language model)

Nothing here is unpickled: metadata is JSON, tensors are safetensors, and torch programs are
checked before ``torch.export.load`` sees them (:mod:`mmembed.inference.runtimes`). Reading
verifies the zip's own CRCs, every member's size and hash and that no member is missing or
extra, so a truncated, corrupt or edited file fails naming the member. The hashes catch
accidents (a bad copy, a hand edit, a swapped file), not an attacker who rewrites the
manifest too; the self-test and the refusal to unpickle are what keep such a file harmless.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import zipfile
from dataclasses import dataclass
from importlib import metadata
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from mmembed.artifacts import write_atomically

FORMAT = "mmembed-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUFFIX = ".mmembed"


class ArtifactError(ValueError):
    """An artifact that cannot be used here; the message names the file and what is wrong."""


def package_versions() -> dict[str, str | None]:
    """Versions of what builds and runs the graphs (None = not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("mmembed", "torch", "triton", "onnx", "onnxscript", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import mmembed

    # the running code's versions (an editable install's metadata can lag behind)
    versions["mmembed"] = mmembed.__version__
    versions["torch"] = torch.__version__
    return versions


def device_description(device: str | torch.device) -> dict[str, Any]:
    """The device graphs are built for: its type and, on CUDA, the GPU and its architecture."""
    device = torch.device(device)
    described: dict[str, Any] = {"type": device.type, "gpu": None, "arch": None}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        described["gpu"] = torch.cuda.get_device_name(index)
        described["arch"] = f"sm_{major}{minor}"
        described["cuda"] = torch.version.cuda
    return described


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_artifact(
    path: str | PathLike, manifest: dict[str, Any], members: dict[str, bytes]
) -> Path:
    """Write ``members`` and ``manifest`` (its member table is filled in here) to ``path``
    atomically (:func:`mmembed.artifacts.write_atomically`), so a crash never leaves a
    half-written artifact under the final name."""
    if MANIFEST in members:
        raise ValueError(f"{MANIFEST} is written from the manifest argument")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **manifest,
        "files": {
            name: {"size": len(data), "sha256": sha256(data)} for name, data in members.items()
        },
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1), zipfile.ZIP_DEFLATED)
        for name, data in members.items():
            # graphs and tensors hardly compress; JSON does
            compression = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            archive.writestr(name, data, compression)
    return write_atomically(path, buffer.getbuffer())


@dataclass
class Artifact:
    """A read and verified artifact: its manifest and every member's bytes."""

    path: Path
    manifest: dict[str, Any]
    members: dict[str, bytes]

    def read(self, name: str) -> bytes:
        if name not in self.members:
            raise ArtifactError(f"{self.path}: has no member {name!r}")
        return self.members[name]

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ArtifactError(f"{self.path}: {name} is not valid JSON ({err})") from err

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            return load(self.read(name))
        except SafetensorError as err:
            raise ArtifactError(
                f"{self.path}: {name} is not a valid safetensors file ({err})"
            ) from err

    def member_names(self) -> list[str]:
        return list(self.members)


def read_artifact(path: str | PathLike) -> Artifact:
    """Open ``path`` and verify it completely; raises :class:`ArtifactError` naming the
    problem (not a zip or truncated, missing manifest, unsupported format version, a member
    missing, extra, of the wrong size or with the wrong hash)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = _read_manifest(archive, path)
            listed = manifest["files"]
            present = {
                info.filename: info for info in archive.infolist() if info.filename != MANIFEST
            }
            missing = sorted(set(listed) - set(present))
            extra = sorted(set(present) - set(listed))
            if missing:
                raise ArtifactError(f"{path}: members missing (truncated or edited?): {missing}")
            if extra:
                raise ArtifactError(f"{path}: members not in the manifest (edited?): {extra}")
            members = {}
            for name, expected in listed.items():
                # check the size before reading, so a forged entry cannot inflate without bound
                if present[name].file_size != expected["size"]:
                    raise ArtifactError(
                        f"{path}: member {name} is {present[name].file_size} bytes, the manifest "
                        f"says {expected['size']} (corrupt or modified)"
                    )
                data = archive.read(name)
                if sha256(data) != expected["sha256"]:
                    raise ArtifactError(
                        f"{path}: member {name} does not match its SHA-256 in the manifest "
                        "(corrupt or modified)"
                    )
                members[name] = data
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as err:
        raise ArtifactError(
            f"{path}: not a readable mmembed artifact; truncated or corrupt? "
            f"({type(err).__name__}: {err})"
        ) from err
    return Artifact(path, manifest, members)


def _read_manifest(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise ArtifactError(f"{path}: no {MANIFEST}; not an mmembed artifact") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{path}: {MANIFEST} is not valid JSON ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not an mmembed artifact (manifest format is not {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        built_by = (manifest.get("versions") or {}).get("mmembed")
        raise ArtifactError(
            f"{path}: artifact format version {version!r} (written by mmembed {built_by}); this "
            f"mmembed reads format {FORMAT_VERSION} and older: upgrade mmembed"
        )
    if not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{path}: {MANIFEST} has no member table")
    return manifest


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """safetensors bytes of ``tensors`` (made contiguous, on the CPU)."""
    from safetensors.torch import save

    return save({name: t.detach().cpu().contiguous() for name, t in tensors.items()})


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, indent=1, ensure_ascii=False).encode()


def program_bytes(program: torch.export.ExportedProgram) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()
