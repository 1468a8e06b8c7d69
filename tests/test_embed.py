"""mmembed-embed and mmembed-search on a tiny multimodal run."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import multimodal_overrides
from mmembed.embed import (
    EmbedSkipWarning,
    Preprocess,
    embed_main,
    load_run,
    read_parquet,
    search_main,
)


@pytest.fixture(scope="module")
def trained_run(multimodal_corpora, tmp_path_factory):
    """A multimodal run trained for two steps by the real ``mmembed-train`` (Hydra writes its
    .hydra/config.yaml, which the commands rebuild the model from)."""
    root = tmp_path_factory.mktemp("embed_run")
    command = [
        sys.executable, "-m", "mmembed.train", *multimodal_overrides(multimodal_corpora),
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "test=false", "callbacks.rich_progress_bar=null", f"paths.root_dir={root}",
    ]  # fmt: skip
    env = {**os.environ, "MMEMBED_RUN_ID": "embed-test"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "logs" / "multimodal_scratch" / "runs" / "embed-test"


@pytest.fixture
def inputs(multimodal_corpora, tmp_path):
    folder = tmp_path / "inputs"
    (folder / "nested").mkdir(parents=True)
    captions, spoken, video = (multimodal_corpora[p] for p in ("captions", "spoken", "video"))
    for image in sorted((captions / "images").glob("*.png"))[:3]:
        shutil.copy(image, folder / "nested" / image.name)
    shutil.copy(next((spoken / "audio" / "test").glob("*.wav")), folder / "query.wav")
    shutil.copy(next((video / "videos").rglob("*.mp4")), folder / "clip.mp4")
    (folder / "texts.txt").write_text("a smiling face\n\nmoving left\n")
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "notes.json").write_text("{}")  # not a kind mmembed embeds: left out
    return folder


def result_rows(capsys):
    """The ranked lines mmembed-search printed: rank, score, modality, path[, text]."""
    lines = capsys.readouterr().out.splitlines()
    return [line.split() for line in lines if line.strip()[:1].isdigit()]


@pytest.mark.slow
def test_embed_writes_every_readable_file_with_its_path(trained_run, inputs, tmp_path):
    out = tmp_path / "vectors.parquet"
    with pytest.warns(EmbedSkipWarning, match="broken.png"):
        embed_main([str(trained_run), str(inputs), "--text", "a red heart", "--out", str(out)])
    items, vectors = read_parquet(out)
    kinds = sorted(item.modality for item in items)
    assert kinds == ["audio", "image", "image", "image", "text", "text", "text", "video"]
    assert {item.text for item in items if item.modality == "text"} == {
        "a smiling face", "moving left", "a red heart"}  # fmt: skip
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(len(items)))
    # the vector of an image is the model's embedding of it, preprocessed as in evaluation
    model, data = load_run(trained_run)
    image = next(item for item in items if item.modality == "image")
    with torch.no_grad():
        expected = model.embed_image(Preprocess(data).image(image.source)[None])[0]
    torch.testing.assert_close(vectors[items.index(image)], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_search_ranks_a_folder_for_typed_and_spoken_queries(trained_run, inputs, tmp_path, capsys):
    # the spoken query is in the folder: it is its own best match
    search_main([str(trained_run), str(inputs), "--audio-query", str(inputs / "query.wav"),
                 "--top", "3"])  # fmt: skip
    rows = result_rows(capsys)
    assert len(rows) == 3 and rows[0][3].endswith("query.wav") and float(rows[0][1]) > 0.999
    scores = [float(row[1]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    # a typed query over embedded vectors, images only
    out = tmp_path / "v.parquet"
    embed_main([str(trained_run), str(inputs / "nested"), "--out", str(out)])
    capsys.readouterr()
    search_main([str(trained_run), str(out), "--query", "a smiling face", "--modality", "image"])
    rows = result_rows(capsys)
    assert len(rows) == 3 and {row[2] for row in rows} == {"image"}


@pytest.mark.slow
def test_commands_name_what_is_wrong(trained_run, inputs, tmp_path, capsys):
    with pytest.raises(SystemExit):
        embed_main([str(trained_run), str(inputs / "notes.json"), "--out", str(tmp_path / "x")])
    assert "notes.json: unknown kind of file" in capsys.readouterr().err
    lonely = tmp_path / "lonely.ckpt"
    shutil.copy(next((trained_run / "checkpoints").glob("*.ckpt")), lonely)
    with pytest.raises(SystemExit):
        search_main([str(lonely), str(inputs), "--query", "x"])
    assert "no run config; pass --config" in capsys.readouterr().err
    # with the run's config named, a copied checkpoint works
    search_main([str(lonely), str(inputs / "nested"), "--query", "x",
                 "--config", str(trained_run / ".hydra" / "config.yaml")])  # fmt: skip
    assert "image" in capsys.readouterr().out
