"""Video classification: encoders, the text-label head, zero-shot scoring, metrics, the app."""

import functools
import json
import math
import shutil
import warnings
from pathlib import Path

import hydra
import pytest
import torch
from torch import nn

from helpers.runs import tiny_video_corpus, video_overrides
from mmembed import SharedEmbedding
from mmembed.metrics.classification import save_confusion_matrix, video_level_scores
from mmembed.models.backbone import CheckpointMismatchError
from mmembed.models.video import (
    VIDEO_BACKBONES,
    FrameDifferences,
    build_video_encoder,
)
from mmembed.tasks.video_classification import VideoClassification
from mmembed.text import train_tokenizer
from mmembed.train import run, validate_config

CONF = Path(__file__).resolve().parents[2] / "conf"
CLASSES = ["moving left", "moving right", "growing"]
# Input each backbone accepts cheaply (s3d's strides need at least 8 frames of 32x32).
TINY_CLIP = {"s3d": (1, 3, 8, 32, 32)}
HEAVY_BACKBONES = {"mvit_v2_s", "swin3d_t"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_video_corpus(tmp_path_factory.mktemp("video") / "corpus", CLASSES)


def tiny_task(head="text", width=32, class_names=CLASSES, seed=0):
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(class_names, kind="char")
    return VideoClassification(
        tokenizer=tokenizer,
        encoder=build_video_encoder("video_small", width, channels=(8, 16)),
        embedding=functools.partial(SharedEmbedding, embedding_dim=16),
        width=width,
        head=head,
        class_names=class_names,
    )


# --- configs ---------------------------------------------------------------------------------


def test_video_experiment_composes(compose_train):
    cfg = compose_train(["experiment=video_default"])
    validate_config(cfg)
    assert cfg.task._target_.endswith("VideoClassification")
    assert cfg.task.encoder.name == "video_small"
    assert cfg.monitor.metric == "val/video_top1" and cfg.monitor.mode == "max"
    assert cfg.data.data_dir.endswith("/data/generated/video")
    assert cfg.corpus._target_.endswith("ensure_video_corpus")
    assert cfg.corpus.out_dir == cfg.data.data_dir
    assert cfg.tokenizer.kind == "char"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in HEAVY_BACKBONES else n
        for n in VIDEO_BACKBONES
    ],
)
def test_each_backbone_config_builds_a_clip_encoder(compose_train, name):
    cfg = compose_train(
        ["experiment=video_default", f"model/encoder@task.encoder={name}", "task.width=24"]
    )
    encoder = hydra.utils.instantiate(cfg.task.encoder).eval()
    assert encoder.out_dim == 24
    with torch.no_grad():
        out = encoder(torch.randn(TINY_CLIP.get(name, (2, 3, 4, 32, 32))))
    assert out.shape == (TINY_CLIP.get(name, (2,))[0], 24)
    assert torch.isfinite(out).all()
    # the classification head is gone: nothing left produces torchvision's 400 classes
    assert not any(
        isinstance(m, nn.Linear | nn.Conv3d) and m.weight.shape[0] == 400 for m in encoder.modules()
    )


def test_frame_differences_show_only_what_moves():
    clips = torch.zeros(1, 3, 3, 4, 4)
    clips[:, :, 1:, 0, 0] = 1.0  # one pixel switches on at frame 1 and stays on
    out = FrameDifferences()(clips)
    assert out.shape == (1, 6, 3, 4, 4)
    torch.testing.assert_close(out[:, :3], clips)
    assert out[:, 3:, :, 0, 0].tolist() == [[[0.0, 1.0, 0.0]] * 3]
    assert out[:, 3:].abs().sum() == 3.0


@pytest.mark.parametrize("block", ["3d", "2+1d"])
def test_small_encoder_exports(block):
    encoder = build_video_encoder("video_small", 16, channels=(8, 16), block=block).eval()
    clips = torch.randn(2, 3, 4, 32, 32)
    program = torch.export.export(encoder, (clips,))
    torch.testing.assert_close(program.module()(clips), encoder(clips))


# --- checkpoints -----------------------------------------------------------------------------


def test_missing_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="backbone checkpoint .*nope.pth.* never"):
        build_video_encoder("mc3_18", 8, checkpoint=tmp_path / "nope.pth")


def test_mismatched_checkpoint_names_the_problem(tmp_path):
    other = build_video_encoder("video_small", 8, channels=(8, 16)).backbone
    torch.save(other.state_dict(), tmp_path / "small.pth")
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):
        build_video_encoder("video_small", 8, channels=(8, 32), checkpoint=tmp_path / "small.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="cannot read"):
        build_video_encoder("mc3_18", 8, checkpoint=tmp_path / "garbage.pth")


def test_torchvision_checkpoint_loads_with_another_head(tmp_path):
    import torchvision

    torch.manual_seed(1)
    classifier = torchvision.models.video.mc3_18(weights=None, num_classes=7)
    torch.save(classifier.state_dict(), tmp_path / "mc3.pth")
    encoder = build_video_encoder("mc3_18", 8, checkpoint=tmp_path / "mc3.pth")
    torch.testing.assert_close(
        encoder.backbone.trunk.stem[0].weight, classifier.stem[0].weight, rtol=0, atol=0
    )


# --- the text-label head and zero-shot scoring ------------------------------------------------


def test_forward_equals_scoring_the_training_classes():
    task = tiny_task().eval()
    clips = torch.randn(3, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(task(clips), task.score_labels(clips, CLASSES))


def test_reordering_class_names_permutes_the_scores():
    task = tiny_task().eval()
    clips = torch.randn(4, 3, 4, 32, 32)
    order = [2, 0, 1]
    with torch.no_grad():
        scores = task.score_labels(clips, CLASSES)
        reordered = task.score_labels(clips, [CLASSES[i] for i in order])
    torch.testing.assert_close(reordered, scores[:, order])
    assert not torch.allclose(scores[:, 0], scores[:, 1])  # the names really are told apart


def test_unseen_labels_are_scored_through_the_shared_table():
    task = tiny_task().eval()
    clips = torch.randn(2, 2, 3, 4, 32, 32)  # (B, K, ...) gives per-clip scores
    new_labels = ["moving up", "shrinking", "left", "standing still"]
    scores = task.score_labels(clips, new_labels)
    assert scores.shape == (2, 2, 4)
    # the scores come from the shared table: a gradient reaches exactly the rows of its tokens
    scores.sum().backward()
    used = {i for name in new_labels for i in task.tokenizer.encode(name)}
    touched = set(task.embedding.weight.grad.abs().sum(dim=1).nonzero().flatten().tolist())
    assert touched == used
    # and changing one row of the table changes the scores of the labels that use it
    row = task.tokenizer.encode("l")[0]
    with torch.no_grad():
        before = task.score_labels(clips, new_labels)
        task.embedding.weight[row] += 1.0
        after = task.score_labels(clips, new_labels)
    changed = (before - after).abs().amax(dim=(0, 1)) > 1e-6
    assert changed.tolist() == [row in task.tokenizer.encode(name) for name in new_labels]
    assert changed.tolist() == [False, False, True, True]  # "left" and "standing still"


def test_class_names_the_tokenizer_cannot_spell_fail_when_bound():
    task = tiny_task()
    with pytest.raises(ValueError, match=r"no tokens after normalisation.*head='linear'") as err:
        task.set_class_names(["moving left", "\u2764"])
    assert "['\u2764']" in str(err.value)  # the unspellable one, and only it, is named
    linear = tiny_task(head="linear")
    linear.set_class_names(["moving left", "\u2764"])  # a linear head needs no spelling
    assert linear.class_names == ["moving left", "\u2764"]


def test_linear_head_refuses_zero_shot():
    task = tiny_task(head="linear")
    assert task(torch.randn(2, 3, 4, 32, 32)).shape == (2, len(CLASSES))
    with pytest.raises(ValueError, match="head='text'"):
        task.score_labels(torch.randn(1, 3, 4, 32, 32), ["jumping"])


# --- metrics ---------------------------------------------------------------------------------


def test_video_scores_average_clip_probabilities():
    # video 0: probabilities (0.5, 0.5) and (0.75, 0.25) -> (0.625, 0.375)
    clip_logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])
    torch.testing.assert_close(video_level_scores(clip_logits), torch.tensor([[0.625, 0.375]]))


class MeanColour(nn.Module):
    """A stand-in encoder: a clip's embedding is its mean colour (first two channels)."""

    out_dim = 2

    def forward(self, clips):
        return clips.mean(dim=(2, 3, 4))[:, :2]


def test_video_level_metrics_average_the_clips_of_each_video():
    task = VideoClassification(
        tokenizer=train_tokenizer(["a", "b"], kind="char"),
        encoder=MeanColour(),
        embedding=functools.partial(SharedEmbedding, embedding_dim=4),
        width=2,
        head="linear",
        class_names=["a", "b"],
    )
    with torch.no_grad():
        task.linear_head.weight.copy_(torch.eye(2))
        task.linear_head.bias.zero_()
    # per clip (logit a, logit b); each video has one right and one wrong clip, and the right
    # one is the more confident, so averaging gets both videos right
    logits = torch.tensor([[[3.0, 0.0], [0.0, 1.0]], [[0.0, 2.0], [1.0, 0.0]]])
    clips = torch.zeros(2, 2, 3, 2, 4, 4)
    clips[:, :, :2] = logits[..., None, None, None]
    labels = torch.tensor([0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer
        batch = {"clips": clips, "labels": labels, "video_indices": torch.arange(2)}
        task.validation_step({**batch, "paths": ["a.mp4", "b.mp4"]}, 0)
        task.validation_step({"paths": []}, 1)  # every item failed to load: nothing to score
    assert task.metrics["val_clip_top1"].compute() == 0.5
    assert task.metrics["val_video_top1"].compute() == 1.0
    assert task.metrics["val_clip_top5"].top_k == 2  # top-5 clipped to the 2 classes
    assert task.metrics["val_confusion"].compute().tolist() == [[1, 0], [0, 1]]


def test_confusion_matrix_png(tmp_path):
    path = save_confusion_matrix(torch.tensor([[3, 1], [0, 4]]), ["a", "b"], tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="does not fit"):
        save_confusion_matrix(torch.zeros(3, 3), ["a", "b"], tmp_path / "d.png")


# --- the training app ------------------------------------------------------------------------


def test_fast_dev_run_of_the_video_experiment(compose_train, corpus, tmp_path):
    cfg = compose_train(video_overrides(corpus, "debug=fast_dev_run"))
    metrics = run(cfg)
    expected = {
        f"{split}/{level}_top{k}"
        for split in ("val", "test")
        for level in ("clip", "video")
        for k in (1, 5)
    }
    assert expected | {"train/loss", "val/loss", "test/loss"} <= metrics.keys()
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert metrics["test/video_top5"] == 1.0  # top-5 of 3 classes is clipped to top-3
    run_dir = tmp_path / "run"
    assert (
        json.loads((run_dir / "metrics.json").read_text())["test/video_top1"]
        == (metrics["test/video_top1"])
    )
    assert (run_dir / "confusion_matrices" / "test.png").stat().st_size > 0
    assert (run_dir / "confusion_matrices" / "val_epoch_000.png").stat().st_size > 0


@pytest.mark.slow
def test_overfit_memorises_a_few_videos(compose_train, corpus, tmp_path):
    """The model really learns: 100% top-1 on the clips it trained on."""
    memorised = tmp_path / "memorised"
    shutil.copytree(corpus, memorised)
    for split in ("validation", "test"):
        shutil.copy(memorised / "train.csv", memorised / f"{split}.csv")
    cfg = compose_train(
        video_overrides(
            memorised,
            "data.crop_scale=[1.0,1.0]",
            "data.frames_per_clip=8",
            "data.frame_stride=1",
            "data.num_eval_clips=1",
            "task.encoder.channels=[16,32]",
            "optimizer.lr=0.01",
            "optimizer.weight_decay=0.0",
            "trainer.max_epochs=40",
            "trainer.max_time=null",
            "trainer.check_val_every_n_epoch=40",
            "trainer.num_sanity_val_steps=0",
            "callbacks=none",
        )
    )
    metrics = run(cfg)
    assert metrics["test/video_top1"] == 1.0, metrics
    assert metrics["test/clip_top1"] == 1.0, metrics
