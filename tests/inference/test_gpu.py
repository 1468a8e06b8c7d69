"""Exported-model inference on CUDA: `pytest -m gpu tests/inference/test_gpu.py` on a GPU machine
(scripts/gpu_check_inference.sh runs it with the AOTInductor probes). CI deselects these; they
fail, not skip, without CUDA."""

import functools
import subprocess
import sys

import pytest
import torch

from mmembed import SharedEmbedding
from mmembed.inference.artifact import read_artifact
from mmembed.inference.export import export_trained
from mmembed.inference.export.rebuild import TrainedModel
from mmembed.inference.predictor import from_artifact
from mmembed.models.audio import build_audio_encoder
from mmembed.models.text_decoder import TransformerTextDecoder
from mmembed.tasks.speech_recognition import SpeechRecognition
from mmembed.text import train_tokenizer

pytestmark = pytest.mark.gpu


def joint_task(device):
    torch.manual_seed(0)
    task = SpeechRecognition(
        build_audio_encoder(
            out_dim=64, d_model=64, num_layers=2, num_heads=4, ffn_dim=128, n_mels=40
        ),
        tokenizer=train_tokenizer(["the quick brown fox jumps over the lazy dog"], "char"),
        # the Triton kernels on CUDA (backend="auto" picks the torch path there until the
        # kernels are measured), so a CUDA-built program holds the mmembed::embed_project op
        embedding=functools.partial(SharedEmbedding, embedding_dim=32, backend="triton"),
        width=64,
        decoder=functools.partial(TransformerTextDecoder, num_layers=1, num_heads=4, ffn_dim=128),
        ctc_weight=0.5,
        decoding={"method": "attention", "beam_size": 3, "max_length": 20},
    )
    # as initialised, the random decoder emits tokens up to max_length (a scaled table made it
    # emit the end token at once, which would leave the step graph untested)
    return task.to(device).eval()


def waveforms():
    generator = torch.Generator().manual_seed(1)
    return [0.1 * torch.randn(n, generator=generator) for n in (16000, 9000, 23000)]


def eager(task, device):
    with torch.no_grad():
        return [task.transcribe(w[None].to(device), torch.tensor([w.numel()], device=device))[0]
                for w in waveforms()]  # fmt: skip


@pytest.mark.parametrize("export_device", ["cpu", "cuda"])
def test_torch_runtime_on_cuda_gives_the_eager_transcripts(export_device, tmp_path):
    task = joint_task(export_device)
    expected = eager(task, export_device)
    assert all(expected)  # the decoder-step graph runs for more than one step
    trained = TrainedModel(task, tmp_path / "x.ckpt", "0" * 64, {}, {}, None)
    # torch programs only: the GPU machines' onnxruntime has no CUDA provider to check ONNX on
    path = export_trained(trained, tmp_path / "m.mmembed", ("torch",), export_device)
    artifact = read_artifact(path)
    assert artifact.manifest["built_on"]["type"] == export_device
    if export_device == "cuda":
        # exported on CUDA, the shared table stays the Triton op in the program
        assert b"mmembed.embed_project" in artifact.members["graphs/decoder_step.pt2"]
    predictor = from_artifact(artifact, runtime="torch", device="cuda")
    assert predictor.transcribe(waveforms()) == expected


@pytest.mark.xfail(
    reason="aoti_load_package segfaulted on packages holding the triton_op kernels (torch 2.11, "
    "H100, 2026-11-27); scripts/gpu_check_inference.sh probes the variants",
    strict=False,
)
def test_aot_inductor_artifact_in_a_subprocess(tmp_path):
    """AOTInductor crashed (segfault) on packages holding the triton_op kernels (torch 2.11,
    H100, 2026-11-27): export and load in a child process, so a crash is a failure report, not
    the end of the run."""
    code = f"""
import sys; sys.path.insert(0, {str(__file__.rsplit("/", 1)[0])!r})
import torch
from pathlib import Path
from test_gpu import TrainedModel, eager, export_trained, from_artifact, joint_task, read_artifact
from test_gpu import waveforms
task = joint_task("cuda")
expected = eager(task, "cuda")
trained = TrainedModel(task, Path("x.ckpt"), "0" * 64, {{}}, {{}}, None)
path = export_trained(trained, {str(tmp_path / "aoti.mmembed")!r}, ("torch", "aoti"), "cuda")
got = from_artifact(read_artifact(path), runtime="aoti", device="cuda").transcribe(waveforms())
assert got == expected, (got, expected)
print("AOTI OK")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "AOTI OK" in done.stdout, (
        f"exit {done.returncode}:\n{done.stderr[-3000:]}"
    )
