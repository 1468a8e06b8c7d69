"""init_from: another run's weights in a new run, the token table matched by token string."""

import functools

import pytest
import torch

from mmembed import SharedEmbedding
from mmembed.models.video import build_video_encoder
from mmembed.tasks.video_classification import VideoClassification
from mmembed.text import train_tokenizer
from mmembed.transfer import InitFromError, init_from, resolve_checkpoint


def video_task(class_names, head="text", seed=0):
    torch.manual_seed(seed)
    return VideoClassification(
        build_video_encoder("video_small", 16, channels=(8,)),
        tokenizer=train_tokenizer(class_names, kind="char"),
        embedding=functools.partial(SharedEmbedding, embedding_dim=8),
        width=16,
        head=head,
        class_names=class_names,
    )


def save_checkpoint(task, path):
    torch.save({"state_dict": task.state_dict(), "tokenizer": task.tokenizer.to_dict()}, path)
    return path


def test_table_rows_follow_their_tokens_across_vocabularies(tmp_path):
    source = video_task(["moving left", "growing"], seed=1)
    checkpoint = save_checkpoint(source, tmp_path / "source.ckpt")
    # the new data adds the letters of "spin" and drops some old ones
    target = video_task(["moving left", "spinning"], seed=2)
    before = target.embedding.weight.detach().clone()
    report = init_from(target, checkpoint)

    new_chars = set("spinning") - set("moving left growing")
    assert sorted(report.new_tokens) == sorted(new_chars)
    assert report.rows_matched == target.tokenizer.vocab_size - len(new_chars)
    old_vocab, new_vocab = source.tokenizer, target.tokenizer
    for token_id in range(new_vocab.vocab_size):
        token = new_vocab.id_to_token(token_id)
        row = target.embedding.weight[token_id]
        if token in new_chars:
            assert torch.equal(row, before[token_id]), token  # the fresh initialisation
        else:
            assert torch.equal(row, source.embedding.weight[old_vocab.token_to_id(token)]), token
    # every other tensor is the source's
    for name in ("encoder.projection.weight", "embedding.projection.weight"):
        assert torch.equal(target.state_dict()[name], source.state_dict()[name])


def test_mismatched_modules_are_named_in_one_error_unless_skipped(tmp_path):
    source = video_task(["a", "b", "c"], head="linear")
    checkpoint = save_checkpoint(source, tmp_path / "source.ckpt")
    target = video_task(["a", "b"], head="linear")
    with pytest.raises(InitFromError, match=r"linear_head\.weight \(checkpoint \(3, 16\)"):
        init_from(target, checkpoint)
    report = init_from(target, checkpoint, skip=["linear_head"])
    assert report.skipped == ["linear_head.weight", "linear_head.bias"]
    assert torch.equal(target.encoder.projection.weight, source.encoder.projection.weight)


def test_run_folders_resolve_to_their_best_checkpoint(tmp_path):
    run = tmp_path / "logs" / "task" / "runs" / "2026-01-01"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "checkpoints" / "last.ckpt"
    (run / "checkpoints" / "epoch_004.ckpt").write_bytes(b"x")
    assert resolve_checkpoint(tmp_path / "logs" / "task") == run / "checkpoints" / "epoch_004.ckpt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint under"):
        resolve_checkpoint(tmp_path / "empty")


def test_an_unreadable_checkpoint_is_named(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InitFromError, match="cannot read .*bad.ckpt"):
        init_from(video_task(["a", "b"]), bad)
