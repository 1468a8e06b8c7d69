"""The .mmembed file: atomic writes, verification on read, version checks, safe program loading."""

import io
import json
import zipfile

import pytest
import torch

from mmembed.inference.artifact import (
    FORMAT_VERSION,
    MANIFEST,
    Artifact,
    ArtifactError,
    json_bytes,
    package_versions,
    program_bytes,
    read_artifact,
    tensor_bytes,
    write_artifact,
)
from mmembed.inference.runtimes import TorchProgram, check_compatible, check_program_archive

MEMBERS = {
    "config.json": json_bytes({"task": "speech_recognition"}),
    "tensors.safetensors": tensor_bytes({"x": torch.arange(6.0).view(2, 3)}),
    "graphs/g.onnx": bytes(range(256)) * 8,
}


def manifest(**extra):
    return {
        "task": "speech_recognition",
        "versions": package_versions(),
        "built_on": {"type": "cpu", "gpu": None, "arch": None},
        "runtimes": ["torch", "onnx"],
        **extra,
    }


@pytest.fixture
def artifact_path(tmp_path):
    return write_artifact(tmp_path / "m.mmembed", manifest(), MEMBERS)


def rewrite(path, change):
    """Rewrite the zip at ``path`` with ``change(name, data) -> data | None`` (None drops it)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            data = change(name, data)
            if data is not None:
                archive.writestr(name, data)


def test_round_trip_keeps_every_member_and_fills_the_member_table(artifact_path):
    artifact = read_artifact(artifact_path)
    assert artifact.members == MEMBERS
    assert artifact.manifest["format_version"] == FORMAT_VERSION
    assert set(artifact.manifest["files"]) == set(MEMBERS)
    assert artifact.json("config.json") == {"task": "speech_recognition"}
    assert torch.equal(artifact.tensors("tensors.safetensors")["x"], torch.arange(6.0).view(2, 3))


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, artifact_path, monkeypatch):
    before = artifact_path.read_bytes()

    def failing_writestr(self, name, data, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(OSError, match="disk full"):
        write_artifact(artifact_path, manifest(), MEMBERS)
    assert artifact_path.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mmembed"]


def test_truncated_file_is_refused_naming_it(artifact_path):
    data = artifact_path.read_bytes()
    for size in (len(data) // 2, len(data) - 30, 10):
        artifact_path.write_bytes(data[:size])
        with pytest.raises(ArtifactError, match=r"m\.mmembed: not a readable mmembed artifact"):
            read_artifact(artifact_path)


def test_flipped_byte_is_refused(artifact_path):
    data = bytearray(artifact_path.read_bytes())
    offset = data.index(bytes(range(256)))  # inside the stored graphs/g.onnx member
    data[offset + 100] ^= 0xFF
    artifact_path.write_bytes(bytes(data))
    with pytest.raises(
        ArtifactError, match="m.mmembed: not a readable .*Bad CRC-32 for file 'graphs/g.onnx'"
    ):
        read_artifact(artifact_path)


def test_modified_member_is_refused_naming_it(artifact_path):
    # a consistent zip (fresh CRCs) whose member no longer matches the manifest's hash
    rewrite(
        artifact_path, lambda name, data: data[:-1] + b"\x00" if name == "graphs/g.onnx" else data
    )
    with pytest.raises(ArtifactError, match="graphs/g.onnx does not match its SHA-256"):
        read_artifact(artifact_path)
    rewrite(artifact_path, lambda name, data: data + b"!" if name == "config.json" else data)
    with pytest.raises(ArtifactError, match="config.json is .* bytes, the manifest says"):
        read_artifact(artifact_path)


def test_missing_and_extra_members_are_named(artifact_path, tmp_path):
    rewrite(artifact_path, lambda name, data: None if name == "tensors.safetensors" else data)
    with pytest.raises(ArtifactError, match=r"members missing .*\['tensors.safetensors'\]"):
        read_artifact(artifact_path)
    path = write_artifact(tmp_path / "n.mmembed", manifest(), MEMBERS)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("graphs/extra.pt2", b"unexpected")
    with pytest.raises(ArtifactError, match=r"not in the manifest .*\['graphs/extra.pt2'\]"):
        read_artifact(path)


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="no such file"):
        read_artifact(tmp_path / "absent.mmembed")
    plain = tmp_path / "plain.mmembed"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(ArtifactError, match="no manifest.json; not an mmembed artifact"):
        read_artifact(plain)
    (tmp_path / "text.mmembed").write_text("not a zip")
    with pytest.raises(ArtifactError, match="not a readable mmembed artifact"):
        read_artifact(tmp_path / "text.mmembed")


def test_newer_format_version_asks_for_an_upgrade(artifact_path):
    def bump(name, data):
        if name != MANIFEST:
            return data
        return json.dumps({**json.loads(data), "format_version": FORMAT_VERSION + 1}).encode()

    rewrite(artifact_path, bump)
    with pytest.raises(
        ArtifactError, match=f"format version {FORMAT_VERSION + 1} .* upgrade mmembed"
    ):
        read_artifact(artifact_path)


def test_another_torch_release_refuses_torch_programs_but_not_onnx(tmp_path):
    foreign = manifest(versions={**package_versions(), "torch": "2.9.1+cu128"})
    artifact = Artifact(tmp_path / "m.mmembed", foreign, dict(MEMBERS))
    with pytest.raises(
        ArtifactError, match=r"built with torch 2\.9\.1\+cu128, this is torch .*runtime='onnx'"
    ):
        check_compatible(artifact, "torch", torch.device("cpu"))
    check_compatible(artifact, "onnx", torch.device("cpu"))  # ONNX does not depend on torch


def test_runtime_not_in_the_artifact_is_named(tmp_path):
    artifact = Artifact(tmp_path / "m.mmembed", manifest(runtimes=["onnx"]), dict(MEMBERS))
    with pytest.raises(ArtifactError, match=r"holds no 'torch' graphs \(it has \['onnx'\]\)"):
        check_compatible(artifact, "torch", torch.device("cpu"))
    with pytest.raises(ValueError, match="runtime must be one of"):
        check_compatible(artifact, "tensorrt", torch.device("cpu"))


def test_aoti_package_for_another_gpu_or_without_one_is_refused(tmp_path):
    built = manifest(
        runtimes=["aoti"], built_on={"type": "cuda", "gpu": "NVIDIA H100", "arch": "sm_90"}
    )
    artifact = Artifact(tmp_path / "m.mmembed", built, dict(MEMBERS))
    with pytest.raises(ArtifactError, match="needs a CUDA device"):
        check_compatible(artifact, "aoti", torch.device("cpu"))
    other_triton = manifest(
        runtimes=["aoti"],
        versions={**package_versions(), "triton": "0.0.1"},
        built_on=built["built_on"],
    )
    artifact = Artifact(tmp_path / "m.mmembed", other_triton, dict(MEMBERS))
    with pytest.raises(ArtifactError, match="compiled with triton 0.0.1"):
        check_compatible(artifact, "aoti", torch.device("cpu"))


# --- torch.export archives -------------------------------------------------------------------


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)

    def forward(self, x):
        return self.linear(x).relu() * x.shape[0]


@pytest.fixture(scope="module")
def program_data():
    dim = torch.export.Dim("n", min=1, max=64)
    program = torch.export.export(Tiny().eval(), (torch.randn(5, 3),), dynamic_shapes=({0: dim},))
    return program_bytes(program)


def edit_archive(data: bytes, change) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            edited = change(name, source.read(name))
            if edited is not None:
                target.writestr(name, edited)
    return out.getvalue()


def test_a_plain_program_passes_the_check_and_runs(program_data):
    check_program_archive(program_data, "p.pt2")
    x = torch.randn(7, 3)
    (got,) = TorchProgram(program_data, "p.pt2", torch.device("cpu"), "cpu")(x)
    assert got.shape == (7, 4)


def test_a_graph_calling_anything_but_tensor_ops_is_refused(program_data):
    def hijack(name, data):
        if name.endswith("models/model.json"):
            return data.replace(b'"torch.ops.aten.relu.default"', b'"torch.os.system"')
        return data

    with pytest.raises(ArtifactError, match="calls 'torch.os.system', which is not a tensor op"):
        check_program_archive(edit_archive(program_data, hijack), "p.pt2")


def test_pickled_payloads_are_refused(program_data):
    def pickled(name, data):
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"]))
            config["config"][first]["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    with pytest.raises(ArtifactError, match="is stored as a pickle; refusing to load"):
        check_program_archive(edit_archive(program_data, pickled), "p.pt2")

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    def unsafe_inputs(name, data):
        if "/data/sample_inputs/" in name:
            buffer = io.BytesIO()
            torch.save(Payload(), buffer)
            return buffer.getvalue()
        return data

    with pytest.raises(ArtifactError, match="example inputs do not load with weights_only=True"):
        check_program_archive(edit_archive(program_data, unsafe_inputs), "p.pt2")


def test_a_legacy_pickled_weights_file_is_refused(program_data):
    prefix = zipfile.ZipFile(io.BytesIO(program_data)).namelist()[0].split("/")[0]
    out = io.BytesIO(program_data)
    with zipfile.ZipFile(out, "a") as archive:
        archive.writestr(f"{prefix}/data/weights/model.pt", b"pickle")
    with pytest.raises(ArtifactError, match="legacy pickled weights"):
        check_program_archive(out.getvalue(), "p.pt2")
