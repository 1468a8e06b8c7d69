"""What every task inherits from TokenTableTask: the table sized by the vocabulary, plain
hyper-parameters, the tokenizer in checkpoints, optimizer and schedule from partials."""

import functools
import io

import pytest
import torch

from mmembed import SharedEmbedding
from mmembed.models.audio import build_audio_encoder
from mmembed.models.decoding import SpeechDecoding
from mmembed.models.image import build_image_encoder
from mmembed.models.text_decoder import TransformerTextDecoder
from mmembed.models.video import build_video_encoder
from mmembed.tasks.base import TokenTableTask
from mmembed.tasks.image_captioning import ImageCaptioning
from mmembed.tasks.optim import WarmupCosine
from mmembed.tasks.speech_recognition import SpeechRecognition
from mmembed.tasks.video_classification import VideoClassification
from mmembed.text import load_tokenizer_dict, train_tokenizer

WIDTH = 16


def build(kind: str, tokenizer):
    shared = dict(
        tokenizer=tokenizer,
        embedding=functools.partial(SharedEmbedding, embedding_dim=8),
        width=WIDTH,
        optimizer=functools.partial(torch.optim.SGD, lr=0.5),
    )
    if kind == "speech":
        encoder = build_audio_encoder(
            out_dim=WIDTH, d_model=16, num_layers=1, num_heads=2, ffn_dim=32, n_mels=20
        )
        return SpeechRecognition(encoder, decoding=SpeechDecoding(beam_size=3), **shared)
    if kind == "caption":
        decoder = functools.partial(TransformerTextDecoder, num_layers=1, num_heads=2, ffn_dim=32)
        encoder = build_image_encoder("small_cnn", WIDTH, channels=(8,))
        return ImageCaptioning(encoder, decoder, **shared)
    encoder = build_video_encoder("video_small", WIDTH, channels=(8,))
    return VideoClassification(encoder, class_names=["a b", "b a"], **shared)


@pytest.mark.parametrize("kind", ["speech", "caption", "video"])
def test_every_task_shares_the_token_table_contract(kind):
    tokenizer = train_tokenizer(["a b", "b a", "abc"], kind="char")
    task = build(kind, tokenizer)
    assert isinstance(task, TokenTableTask)
    assert task.embedding.num_embeddings == tokenizer.vocab_size
    assert task.embedding.output_dim == WIDTH
    # hyper-parameters are plain data: they load back with weights_only=True
    assert {"tokenizer", "encoder", "embedding", "optimizer"}.isdisjoint(task.hparams)
    buffer = io.BytesIO()
    torch.save(dict(task.hparams), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["width"] == WIDTH
    checkpoint: dict = {}
    task.on_save_checkpoint(checkpoint)
    restored = load_tokenizer_dict(checkpoint["tokenizer"])
    assert restored.encode("a b") == tokenizer.encode("a b")
    optimizer = task.optimizer_factory(task.parameters())
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.5


def test_decoding_dataclass_is_saved_as_a_dict():
    tokenizer = train_tokenizer(["a b"], kind="char")
    task = build("speech", tokenizer)
    assert task.decoding.beam_size == 3
    assert task.hparams["decoding"]["beam_size"] == 3


def test_warmup_cosine_warms_up_decays_and_stretches_like_one_cycle():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = WarmupCosine(optimizer, total_steps=20, warmup_fraction=0.25, min_lr_ratio=0.1)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert rates[5:] == sorted(rates[5:], reverse=True)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    state = schedule.state_dict()
    assert state["total_steps"] == 20
    with pytest.raises(ValueError, match="warmup_fraction"):
        WarmupCosine(optimizer, total_steps=5, warmup_fraction=1.0)


def test_balanced_class_weights_follow_inverse_frequency():
    from mmembed.tasks.video_classification import balanced_weights

    weights = balanced_weights(torch.tensor([30.0, 10.0, 0.0]))
    assert weights.tolist() == pytest.approx([40 / 60, 40 / 20, 0.0])


def test_caption_diversity_counts_distinct_captions_per_image():
    from mmembed.metrics.captioning import CaptionMetrics, caption_diversity

    assert caption_diversity(["a cat", "A cat.", "a dog", "a dog"]) == 0.5
    metric = CaptionMetrics()
    metric.update([1, 2, 3], ["a cat", "a cat", "a dog"], [["x"], ["y"], ["z"]])
    assert metric.compute()["diversity"].item() == pytest.approx(2 / 3)
