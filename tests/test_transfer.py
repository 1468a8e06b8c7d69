"""init_from: another run's weights in a new run, the token table matched by token string."""

import functools

import pytest
import torch

from mmembed import SharedEmbedding
from mmembed.models.video import build_video_encoder
from mmembed.tasks.video_classification import VideoClassification
from mmembed.text import train_tokenizer
from mmembed.transfer import InitFromError, init_from, rename_prefix, resolve_checkpoint


def video_task(class_names, head="text", seed=0, **tokenizer):
    torch.manual_seed(seed)
    return VideoClassification(
        build_video_encoder("video_small", 16, channels=(8,)),
        tokenizer=train_tokenizer(class_names, **{"kind": "char", **tokenizer}),
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


@pytest.mark.parametrize(
    ("name", "old", "new", "expected"),
    [
        ("encoder.conv.weight", "encoder", "speech.encoder", "speech.encoder.conv.weight"),
        ("encoder", "encoder", "speech.encoder", "speech.encoder"),
        ("encoder_extra.weight", "encoder", "speech.encoder", None),  # whole components only
        ("embedding.weight", "", "speech", "speech.embedding.weight"),  # "" is everything
        ("speech.encoder.w", "speech", "", "encoder.w"),  # a part taken out of a model
    ],
)
def test_rename_prefix(name, old, new, expected):
    assert rename_prefix(name, old, new) == expected


def test_a_prefix_map_copies_one_part_into_another_architecture(tmp_path):
    source = video_task(["moving left", "growing"], seed=1)
    checkpoint = save_checkpoint(source, tmp_path / "source.ckpt")
    holder = torch.nn.Module()  # a model holding the video task as one part
    holder.video = video_task(["moving left", "growing"], seed=2)
    holder.other = torch.nn.Linear(3, 3)
    other_before = holder.other.weight.detach().clone()
    part = holder.video
    report = init_from(holder, checkpoint, table=part.embedding.weight, tokenizer=part.tokenizer,
                       prefixes={"": "video"})  # fmt: skip
    for name, value in source.state_dict().items():
        assert torch.equal(holder.video.state_dict()[name], value), name
    assert torch.equal(holder.other.weight, other_before)
    assert report.unmapped == 2  # other.weight and other.bias
    assert "outside the prefix map" in report.summary()


def test_a_space_row_serves_the_subword_word_marker(tmp_path):
    source = video_task(["moving left", "growing"], seed=1)  # characters: " " is a token
    checkpoint = save_checkpoint(source, tmp_path / "source.ckpt")
    target = video_task(["moving left", "growing"], seed=2, kind="bpe", vocab_size=30)
    report = init_from(target, checkpoint)
    assert "\u2581" not in report.new_tokens
    marker = target.tokenizer.token_to_id("\u2581")
    space = source.tokenizer.token_to_id(" ")
    assert torch.equal(target.embedding.weight[marker], source.embedding.weight[space])


# --- through the training app ------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_starts_from_another_runs_weights_and_tokenizer(compose_train, tmp_path, caplog):
    import json
    import logging

    from helpers.runs import asr_overrides, tiny_speech_corpus
    from mmembed.artifacts import load_checkpoint
    from mmembed.train import run

    corpus = tiny_speech_corpus(tmp_path / "speech")
    short = ["trainer.max_epochs=1", "trainer.limit_val_batches=1", "test=false"]
    source_run = asr_overrides(corpus, *short, "data.max_batch_size=3")  # 2 steps
    run(compose_train(source_run, run_dir=tmp_path / "source"))
    source = resolve_checkpoint(tmp_path / "source")
    # lr=0: the new run's one step keeps the weights it started from
    target_run = asr_overrides(
        corpus, *short, "trainer.limit_train_batches=1", f"init_from={tmp_path / 'source'}",
        "init_from_tokenizer=true", "optimizer.lr=0.0",
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="mmembed.train"):
        run(compose_train(target_run, run_dir=tmp_path / "target"))
    assert f"init_from {source}" in caplog.text and "0 new tokens" in caplog.text
    started = load_checkpoint(source)
    trained = load_checkpoint(resolve_checkpoint(tmp_path / "target"))
    assert trained["state_dict"].keys() == started["state_dict"].keys()
    for name, tensor in started["state_dict"].items():
        if "running_" not in name and "num_batches_tracked" not in name:  # BatchNorm statistics
            torch.testing.assert_close(trained["state_dict"][name], tensor, msg=name)
    source_tokenizer, target_tokenizer = (
        json.loads((tmp_path / run_dir / "tokenizer.json").read_text())
        for run_dir in ("source", "target")
    )
    assert source_tokenizer == target_tokenizer
    # weights only: the new run counts its own steps, not the source run's
    assert (started["global_step"], trained["global_step"]) == (2, 1)


class TableHolder(torch.nn.Module):
    """A model that is only a table and its tokenizer (what init_from reads of a task)."""

    def __init__(self, tokenizer, seed, width=16):
        super().__init__()
        torch.manual_seed(seed)
        self.tokenizer = tokenizer
        self.embedding = SharedEmbedding(tokenizer.vocab_size, width, out_features=width)


def projected(holder, tokens):
    rows = torch.tensor([holder.tokenizer.token_to_id(token) for token in tokens])
    return holder.embedding(rows).detach().double()


TEXTS = ["moving left", "growing", "spinning around", "moving right"]


@pytest.mark.parametrize("second_brings_projection", [False, True])
def test_rows_of_two_runs_keep_what_each_run_projected(tmp_path, second_brings_projection):
    """Captions' subwords from one run, a recogniser's characters from another, each with its
    own projection: every part must score its tokens in the shared table as it did alone."""
    words = TableHolder(train_tokenizer(TEXTS, kind="bpe", vocab_size=40), seed=1)
    chars = TableHolder(train_tokenizer(TEXTS, kind="char"), seed=2)
    target = TableHolder(words.tokenizer, seed=3)
    first = init_from(target, save_checkpoint(words, tmp_path / "words.ckpt"))
    assert first.row_mode == "copied"
    assert torch.equal(target.embedding.weight, words.embedding.weight)
    skip = [] if second_brings_projection else ["embedding.projection"]
    second = init_from(target, save_checkpoint(chars, tmp_path / "chars.ckpt"),
                       table_rows="characters", skip=skip, keep_rows=first.rows)  # fmt: skip

    vocab = [target.tokenizer.id_to_token(i) for i in range(target.tokenizer.vocab_size)]
    characters = [t for t in vocab if len(t) == 1]
    others = [t for t in vocab if len(t) > 1 and t not in ("<blank>", "<unk>")]
    assert {"<s>", "</s>"} <= set(others) and any(len(t) > 2 and "<" not in t for t in others)
    assert second.rows_matched == len(characters) + 2  # and the blank and <unk>
    # the characters score as in the recogniser (its space is the subword word marker)...
    spelled = [" " if t == "\u2581" else t for t in characters]
    torch.testing.assert_close(projected(target, characters), projected(chars, spelled),
                               rtol=0, atol=1e-5)  # fmt: skip
    # ... and every other token (<s>, </s>, subwords) as in the captioner
    torch.testing.assert_close(projected(target, others), projected(words, others),
                               rtol=0, atol=1e-5)  # fmt: skip
    if second_brings_projection:
        assert second.row_mode == "copied" and second.reexpressed == len(first.rows)
        assert torch.equal(target.embedding.projection.weight, chars.embedding.projection.weight)
    else:
        assert second.row_mode == "solved" and second.reexpressed == 0
        assert torch.equal(target.embedding.projection.weight, words.embedding.projection.weight)
    assert second.projection_error < 1e-5
    assert "projected rows" in second.summary()


def test_table_rows_none_and_a_bad_choice(tmp_path):
    source = TableHolder(train_tokenizer(TEXTS, kind="char"), seed=1)
    checkpoint = save_checkpoint(source, tmp_path / "chars.ckpt")
    target = TableHolder(source.tokenizer, seed=2)
    before = target.embedding.weight.detach().clone()
    report = init_from(target, checkpoint, table_rows="none", skip=["embedding.projection"])
    assert torch.equal(target.embedding.weight, before) and report.rows == []
    with pytest.raises(InitFromError, match="table_rows must be one of"):
        init_from(target, checkpoint, table_rows="chars")
