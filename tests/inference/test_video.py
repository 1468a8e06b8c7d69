"""Video classification end to end: train a tiny classifier, export it, classify in a fresh
process without the training stack, zero-shot labels through the exported shared table."""

import json

import numpy as np
import pytest
import torch

from helpers.runs import TINY_VIDEO, VIDEO_CLASSES, tiny_video_corpus
from inference.runs import FULL_RUN, linear_video_model, run_serving_python, train_run
from mmembed.data.video import VideoDataModule
from mmembed.data.video_io import decode_frames, probe_video
from mmembed.inference.artifact import read_artifact
from mmembed.inference.cli import export_main
from mmembed.inference.export import export_trained
from mmembed.inference.export.rebuild import load_trained
from mmembed.inference.predictor import from_artifact
from mmembed.metrics.classification import video_level_scores

pytestmark = pytest.mark.slow

CLASSES = VIDEO_CLASSES
ZERO_SHOT = ["moving up", "growing", "shrinking", "moving left"]
# Video-level probabilities of the exported graphs against eager.
PROBABILITY_TOLERANCE = {"torch": 1e-5, "onnx": 1e-3}
DATA = dict(frames_per_clip=4, frame_stride=2, size=32, num_eval_clips=2)

VIDEO = [
    "experiment=video_default",
    *TINY_VIDEO,
    *(f"data.{key}={value}" for key, value in DATA.items()),
    "trainer.max_epochs=10",
    "trainer.check_val_every_n_epoch=10",
    "optimizer.lr=0.01",
    *FULL_RUN,
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_video_corpus(tmp_path_factory.mktemp("video") / "corpus", CLASSES)


@pytest.fixture(scope="module")
def video_run(corpus, tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("video_run"), [*VIDEO, f"data.data_dir={corpus}"])


@pytest.fixture(scope="module")
def video_artifact(video_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("video_export") / "video.mmembed"
    assert export_main([str(video_run), "--out", str(out)]) == 0
    return out


def eager_scores(run_dir, corpus, labels=None):
    """Video-level probabilities of the test videos through the data module's evaluation
    clips and the eager model (as in the run's test)."""
    task = load_trained(run_dir).task
    dataset = VideoDataModule(corpus, **DATA).dataset("test")
    paths = [str(video.path) for video in dataset.videos]
    scores = []
    with torch.no_grad():
        for index in range(len(dataset)):
            clips = dataset[index][0]  # (K, 3, T, H, W)
            logits = task(clips) if labels is None else task.score_labels(clips, labels)
            scores.append(video_level_scores(logits[None]).squeeze(0))
    return paths, torch.stack(scores)


def test_graphs_give_the_eager_labels_and_scores(video_run, video_artifact, corpus):
    paths, expected = eager_scores(video_run, corpus)
    _, expected_zero_shot = eager_scores(video_run, corpus, ZERO_SHOT)
    frames = decode_frames(paths[0], list(range(probe_video(paths[0]).num_frames)))
    np.save(corpus.parent / "frames.npy", frames.permute(0, 2, 3, 1).numpy())
    result = run_serving_python(
        f"""
import numpy as np, torch, mmembed
paths = {paths!r}
result = {{}}
for runtime in ("torch", "onnx"):
    predictor = mmembed.load({str(video_artifact)!r}, runtime=runtime)
    clips = [predictor.read(p) for p in paths]
    pairs = [clips[i : i + 2] for i in range(0, len(clips), 2)]  # dynamic batch
    result[runtime] = {{
        "scores": predictor.scores(clips).tolist(),
        "in_twos": [row for pair in pairs for row in predictor.scores(pair).tolist()],
        "zero_shot": predictor.scores(clips, {ZERO_SHOT!r}).tolist(),
        "top": predictor.classify(paths, top_k=2),
        "zero_shot_top": predictor.classify(paths, labels={ZERO_SHOT!r}, top_k=1),
        "array": predictor.classify(np.load({str(corpus.parent / "frames.npy")!r}), top_k=3),
    }}
"""
    )
    assert len(set(expected.argmax(-1).tolist())) > 1  # the model tells classes apart
    for runtime in ("torch", "onnx"):
        got = result[runtime]
        tolerance = PROBABILITY_TOLERANCE[runtime]
        torch.testing.assert_close(torch.tensor(got["scores"]), expected, atol=tolerance, rtol=0)
        torch.testing.assert_close(torch.tensor(got["in_twos"]), expected, atol=tolerance, rtol=0)
        torch.testing.assert_close(
            torch.tensor(got["zero_shot"]), expected_zero_shot, atol=tolerance, rtol=0
        )
        top = expected.topk(2, dim=-1)
        assert [[entry["label"] for entry in labels] for labels in got["top"]] == [
            [CLASSES[i] for i in row] for row in top.indices.tolist()
        ]
        for labels, values in zip(got["top"], top.values.tolist(), strict=True):
            assert [entry["score"] for entry in labels] == pytest.approx(values, abs=tolerance)
        assert [labels[0]["label"] for labels in got["zero_shot_top"]] == [
            ZERO_SHOT[i] for i in expected_zero_shot.argmax(-1).tolist()
        ]
        # decoded frames in memory give what the file gives
        for from_array, from_file in zip(got["array"][0], got["top"][0], strict=False):
            assert from_array["label"] == from_file["label"]
            assert from_array["score"] == pytest.approx(from_file["score"], abs=1e-6)


def test_predict_with_zero_shot_labels_and_bad_videos(video_artifact, corpus, tmp_path):
    good = sorted(str(p) for p in (corpus / "videos").rglob("*.mp4"))[:2]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    out = tmp_path / "labels.jsonl"
    result = run_serving_python(
        f"""
from mmembed.inference.cli import predict_main
result = predict_main([{str(video_artifact)!r}, {good[0]!r}, {str(broken)!r}, {good[1]!r},
                       "--labels", "moving up, spinning", "--top-k", "1", "--output", {str(out)!r}])
"""
    )
    assert result == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["input"] for r in records] == [good[0], str(broken), good[1]]
    assert records[1]["error"].startswith(f"{broken}: cannot open")
    for record in (records[0], records[2]):
        assert len(record["labels"]) == 1 and record["labels"][0]["label"] in (
            "moving up",
            "spinning",
        )


def test_too_short_video_is_an_input_error(video_artifact):
    from mmembed.inference import InputError

    predictor = from_artifact(read_artifact(video_artifact), self_test=False)
    with pytest.raises(InputError, match="2 frames, shorter than one clip"):
        predictor.read(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="expected uint8 frames"):
        predictor.read(np.zeros((8, 32, 32, 3), dtype=np.float32))


def test_linear_head_exports_and_refuses_zero_shot(tmp_path):
    trained = linear_video_model(tmp_path, CLASSES)
    task = trained.task
    path = export_trained(trained, tmp_path / "linear.mmembed", runtimes=("onnx",))
    artifact = read_artifact(path)
    assert set(artifact.manifest["graphs"]) == {"clips"}
    predictor = from_artifact(artifact, runtime="onnx")
    clips = torch.randn(3, 2, 3, 4, 32, 32)
    with torch.no_grad():
        expected = video_level_scores(task(clips.flatten(0, 1)).view(3, 2, -1))
    torch.testing.assert_close(predictor.scores(list(clips)), expected, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="linear head: it scores only its training classes"):
        predictor.scores(list(clips), labels=["spinning"])
