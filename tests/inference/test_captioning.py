"""Image captioning end to end: train a tiny captioner, export it, caption in a fresh process
without the training stack: token for token the eager model's beam search."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.runs import TINY_CAPTIONER, tiny_caption_corpus
from inference.runs import FULL_RUN, run_serving_python, swap_program_weights, train_run
from mmembed.inference import SelfTestError
from mmembed.inference.artifact import read_artifact, write_artifact
from mmembed.inference.cli import export_main
from mmembed.inference.export.rebuild import load_trained
from mmembed.inference.predictor import from_artifact

pytestmark = pytest.mark.slow

# Beam scores (length-normalised log-likelihoods) of the exported graphs against eager.
SCORE_TOLERANCE = {"torch": 1e-5, "onnx": 1e-3}

CAPTIONER = [
    "experiment=caption_default",
    *TINY_CAPTIONER,
    "task.decoder.num_layers=2",
    "task.decoder.dropout=0.0",
    "task.decoding.max_length=12",
    "task.decoding.beam_size=3",
    "task.grid_images=0",
    "data.augment=false",
    "trainer.max_epochs=12",
    "trainer.check_val_every_n_epoch=12",
    "optimizer.lr=0.005",
    *FULL_RUN,
]


@pytest.fixture(scope="module")
def caption_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("captions")
    corpus = tiny_caption_corpus(root / "corpus")
    return train_run(root, [*CAPTIONER, f"data.data_dir={corpus}"]), corpus


@pytest.fixture(scope="module")
def caption_artifact(caption_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("caption_export") / "captioner.mmembed"
    assert export_main([str(caption_run[0]), "--out", str(out)]) == 0
    return out


def image_files(corpus):
    return sorted(str(p) for p in (corpus / "images").glob("*.png"))[:10]


def test_graphs_give_the_eager_captions_token_for_token(caption_run, caption_artifact):
    run_dir, corpus = caption_run
    files = image_files(corpus)
    task = load_trained(run_dir).task
    from mmembed.data.image_transforms import eval_transform

    transform = eval_transform(32)
    images = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
    expected = task.generate(images)
    assert len({tuple(h.tokens) for h in expected}) > 1  # not one caption for everything
    result = run_serving_python(
        f"""
import numpy as np, mmembed
from PIL import Image
files = {files!r}
result = {{}}
for runtime in ("torch", "onnx"):
    predictor = mmembed.load({str(caption_artifact)!r}, runtime=runtime)
    images = [predictor.read(f) for f in files]
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files[:2]]
    result[runtime] = {{
        "batched": [(h.tokens, h.score) for h in predictor.generate(images)],
        "in_threes": [h.tokens for h in predictor.generate(images, batch_size=3)],
        "captions": predictor.caption(files),
        "from_arrays": predictor.caption(arrays),
        "greedy": predictor.caption(files[:3], beam_size=1),
    }}
"""
    )
    greedy = task.caption(images[:3], beam_size=1)
    captions = [task.tokenizer.decode(h.tokens) for h in expected]
    for runtime in ("torch", "onnx"):
        got = result[runtime]
        assert [tokens for tokens, _ in got["batched"]] == [h.tokens for h in expected], runtime
        assert got["in_threes"] == [h.tokens for h in expected], runtime
        for (_, score), hypothesis in zip(got["batched"], expected, strict=True):
            assert score == pytest.approx(hypothesis.score, abs=SCORE_TOLERANCE[runtime])
        assert got["captions"] == captions, runtime
        assert got["from_arrays"] == captions[:2], runtime
        assert got["greedy"] == greedy, runtime


def test_the_self_test_catches_a_swapped_decoder_weight(caption_artifact, tmp_path):
    artifact = read_artifact(caption_artifact)
    members = dict(artifact.members)
    members["graphs/decoder_step.pt2"] = swap_program_weights(members["graphs/decoder_step.pt2"])
    kept = {
        k: v for k, v in artifact.manifest.items() if k not in ("files", "format", "format_version")
    }
    swapped = write_artifact(tmp_path / "swapped.mmembed", kept, members)
    with pytest.raises(
        SelfTestError, match="graph 'decoder_step' output 'log_probs' \\(torch runtime"
    ):
        from_artifact(read_artifact(swapped), runtime="torch")


def test_predict_writes_a_caption_line_per_image_and_errors_for_bad_ones(
    caption_run, caption_artifact, tmp_path
):
    _, corpus = caption_run
    files = image_files(corpus)[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(Image.open(files[0]).tobytes()[:100])
    glob_pattern = str(corpus / "images" / "*.png")
    result = run_serving_python(
        f"""
import contextlib, io
from mmembed.inference.cli import predict_main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = predict_main([{str(caption_artifact)!r}, {files[0]!r}, {str(broken)!r},
                         {glob_pattern!r}])
result = {{"code": code, "lines": out.getvalue().splitlines()}}
"""
    )
    records = [json.loads(line) for line in result["lines"]]
    assert result["code"] == 1
    assert records[1]["input"] == str(broken) and "cannot read the image" in records[1]["error"]
    assert len(records) == 2 + len(list((corpus / "images").glob("*.png")))  # the glob expanded
    assert all(
        "caption" in r and isinstance(r["score"], float) for r in records if r is not records[1]
    )
    assert records[0]["caption"] == records[2 + sorted(
        str(p) for p in (corpus / "images").glob("*.png")).index(files[0])]["caption"]  # fmt: skip


def test_predictor_refuses_bad_image_arrays_and_options(caption_artifact):
    predictor = from_artifact(read_artifact(caption_artifact), runtime="torch", self_test=False)
    from mmembed.inference import InputError

    with pytest.raises(InputError, match=r"expected an \(H, W, 3\) uint8 array, got float64"):
        predictor.read(np.zeros((8, 8, 3)))
    with pytest.raises(InputError, match=r"expected an \(3, H, W\) uint8 tensor"):
        predictor.read(torch.zeros(8, 8, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown search option"):
        predictor.caption(np.zeros((8, 8, 3), dtype=np.uint8), beam_width=2)
