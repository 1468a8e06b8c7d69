"""Multimodal embeddings end to end: train a tiny multimodal run, export its four embedders,
embed audio, images, videos and texts in a fresh process without the training stack, and check
them against the eager model's embeddings (the run's evaluation preprocessing)."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

from conftest import multimodal_overrides
from inference.runs import FULL_RUN, linear_video_model, run_serving_python, train_run
from mmembed.embed import Preprocess, load_run, read_parquet
from mmembed.inference.artifact import read_artifact
from mmembed.inference.cli import export_main, predict_main
from mmembed.inference.export import export_trained
from mmembed.inference.predictor import from_artifact

pytestmark = pytest.mark.slow

# Largest absolute difference of a unit vector's component from the eager model's: measured
# 9e-8 (torch programs) and 1.4e-7 (ONNX Runtime, which sums in other orders and computes the
# spectrogram as a convolution) on this tiny model, batched or not.
TOLERANCE = {"torch": 1e-5, "onnx": 1e-5}
TEXTS = ["a smiling face", "moving left", "a red heart"]


@pytest.fixture(scope="module")
def multimodal_run(multimodal_corpora, tmp_path_factory):
    overrides = multimodal_overrides(
        multimodal_corpora,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "test=false",
        *FULL_RUN,
    )
    return train_run(tmp_path_factory.mktemp("multimodal_run"), overrides)


@pytest.fixture(scope="module")
def artifact(multimodal_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("multimodal_export") / "multimodal.mmembed"
    assert export_main([str(multimodal_run), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def files(multimodal_corpora, tmp_path_factory):
    """Two or three files of each modality, in one folder, in sorted order."""
    folder = tmp_path_factory.mktemp("inputs")
    captions, speech, video = (multimodal_corpora[p] for p in ("captions", "speech", "video"))
    sources = [
        *sorted((speech / "audio").rglob("*.wav"))[:3],
        *sorted((captions / "images").glob("*.png"))[:3],
        *sorted((video / "videos").rglob("*.mp4"))[:2],
    ]
    for index, source in enumerate(sources):
        shutil.copy(source, folder / f"{index:02d}{source.suffix}")
    return sorted(str(path) for path in folder.iterdir())


def eager_embeddings(run_dir, paths):
    """The eager model's embeddings of ``paths`` and of :data:`TEXTS`, through the run's
    evaluation preprocessing (what ``mmembed-embed`` computes)."""
    model, data = load_run(run_dir)
    preprocess = Preprocess(data)
    with torch.no_grad():
        rows = []
        for path in paths:
            if path.endswith(".wav"):
                waveform = preprocess.audio(path)
                rows.append(model.embed_audio(waveform[None], torch.tensor([waveform.numel()])))
            elif path.endswith(".png"):
                rows.append(model.embed_image(preprocess.image(path)[None]))
            else:
                rows.append(model.embed_video(preprocess.video_clips(path)[None]))
        return torch.cat(rows), model.embed_text(TEXTS)


def test_exported_embedders_give_the_eager_embeddings(multimodal_run, artifact, files):
    expected, expected_texts = eager_embeddings(multimodal_run, files)
    manifest = read_artifact(artifact).manifest
    assert manifest["task"] == "multimodal_embedding"
    assert set(manifest["graphs"]) == {"audio", "image", "video", "text"}
    result = run_serving_python(
        f"""
import mmembed
files, texts = {files!r}, {TEXTS!r}
result = {{}}
for runtime in ("torch", "onnx"):
    predictor = mmembed.load({str(artifact)!r}, runtime=runtime)
    result[runtime] = {{
        "files": predictor.embed(files).tolist(),
        # another batch size: one input at a time, and pairs of mixed lengths
        "ones": predictor.embed(files, batch_size=1).tolist(),
        "twos": predictor.embed(files, batch_size=2).tolist(),
        "texts": predictor.embed(texts, modality="text").tolist(),
        "text_ones": predictor.embed(texts, modality="text", batch_size=1).tolist(),
        "one_text": predictor.embed(texts[0], modality="text").tolist(),
    }}
"""
    )
    # the model tells its inputs apart (by far more than the tolerance): an input given
    # another's vector fails
    apart = (expected[:, None] - expected[None]).abs().amax(-1)
    assert float(apart[~torch.eye(len(files), dtype=torch.bool)].min()) > 10 * TOLERANCE["onnx"]
    for runtime, tolerance in TOLERANCE.items():
        got = {key: torch.tensor(value) for key, value in result[runtime].items()}
        for key in ("files", "ones", "twos"):
            torch.testing.assert_close(got[key], expected, atol=tolerance, rtol=0)
        for key in ("texts", "text_ones"):
            torch.testing.assert_close(got[key], expected_texts, atol=tolerance, rtol=0)
        torch.testing.assert_close(got["one_text"], expected_texts[:1], atol=tolerance, rtol=0)
        torch.testing.assert_close(got["files"].norm(dim=1), torch.ones(len(files)))


def test_embed_arrays_by_modality_and_refuse_what_it_cannot_embed(artifact, files):
    from mmembed.inference import InputError

    predictor = from_artifact(read_artifact(artifact), self_test=False)
    audio = next(path for path in files if path.endswith(".wav"))
    waveform = predictor.read(audio)[1].numpy()
    np.testing.assert_allclose(
        predictor.embed(waveform, modality="audio"), predictor.embed(audio), atol=1e-6
    )
    with pytest.raises(InputError, match="notes.txt: not a file kind this model embeds"):
        predictor.embed(["notes.txt"])
    with pytest.raises(InputError, match="text '   ': no tokens after normalisation"):
        predictor.embed(["fine", "   "], modality="text")
    with pytest.raises(ValueError, match="modality must be one of"):
        predictor.embed(["x"], modality="speech")


def test_predict_embed_writes_rows_and_reports_bad_files(artifact, files, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for path in files:
        shutil.copy(path, folder)
    (folder / "03.png").write_bytes(b"not an image")  # corrupt, among good files
    good = sorted(str(p) for p in folder.iterdir() if p.name != "03.png")
    out = tmp_path / "vectors.jsonl"
    table = tmp_path / "vectors.parquet"
    result = run_serving_python(
        f"""
from mmembed.inference.cli import predict_main
common = [{str(artifact)!r}, {str(folder)!r}, "--embed", "--text", "a smiling face",
          "--text", "moving left", "--batch-size", "3"]
result = [predict_main([*common, "--output", {str(out)!r}]),
          predict_main([*common, "--output", {str(table)!r}, "--runtime", "onnx"])]
"""
    )
    assert result == [1, 1]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    inputs = sorted(str(p) for p in folder.iterdir())
    assert [r["input"] for r in records] == [*inputs, "text:0", "text:1"]
    broken = records[inputs.index(str(folder / "03.png"))]
    assert broken["error"].startswith(f"{folder / '03.png'}: cannot read the image")
    kept = [r for r in records if "error" not in r]
    assert [r["modality"] for r in kept] == [
        "audio", "audio", "audio", "image", "image", "video", "video", "text", "text"]  # fmt: skip
    assert [r["text"] for r in kept[-2:]] == ["a smiling face", "moving left"]
    vectors = torch.tensor([r["embedding"] for r in kept])
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(len(kept)))
    # the parquet file holds the same rows (mmembed-embed's columns), from the ONNX graphs
    items, table_vectors = read_parquet(table)
    assert [item.source for item in items] == [r["input"] for r in kept]
    assert [item.modality for item in items] == [r["modality"] for r in kept]
    assert [item.text for item in items][-2:] == ["a smiling face", "moving left"]
    torch.testing.assert_close(table_vectors, vectors, atol=TOLERANCE["onnx"], rtol=0)
    assert set(good) <= {item.source for item in items}


def test_a_single_task_artifact_has_no_embedders(tmp_path, capsys):
    trained = linear_video_model(tmp_path, ["moving left", "growing"])
    path = export_trained(trained, tmp_path / "video.mmembed", runtimes=("torch",))
    predictor = from_artifact(read_artifact(path))
    message = "holds a video_classification model (graphs: clips), which has no embedders"
    with pytest.raises(ValueError, match=re.escape(message)):
        predictor.embed(["a.png"])
    assert predict_main([str(path), "a.png", "--embed"]) == 2
    assert message in capsys.readouterr().err
