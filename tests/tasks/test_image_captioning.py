"""Image captioning: image encoders, the captioning task, its configs and the training app."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import hydra
import pytest
import torch
from PIL import Image

from helpers.runs import TINY_CAPTIONER, tiny_caption_corpus
from mmembed import SharedEmbedding
from mmembed.data.coco import CaptionSample, collate_captions, load_coco_captions
from mmembed.data.image_transforms import eval_transform
from mmembed.datagen.emoji_catalog import find_emoji_font
from mmembed.metrics.captioning import caption_scores
from mmembed.models.backbone import CheckpointMismatchError
from mmembed.models.image import (
    BACKBONES,
    _vit_position_adapter,
    build_image_encoder,
)
from mmembed.models.text_decoder import TransformerTextDecoder
from mmembed.tasks.image_captioning import ImageCaptioning
from mmembed.text.tokenizers import load_tokenizer, load_tokenizer_dict, train_tokenizer
from mmembed.train import run, validate_config


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These models are tiny: a second intra-op thread buys nothing, and on a busy 2-core
    machine waiting for it made the overfit test 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _font_or_fail() -> None:
    try:
        find_emoji_font()
    except FileNotFoundError as err:
        # `make setup` installs the font; a missing one must fail the suite, not skip it
        pytest.fail(f"{err} (run `make system-deps`)")


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _font_or_fail()
    return tiny_caption_corpus(tmp_path_factory.mktemp("corpus") / "captions")


# --- image encoders ------------------------------------------------------------------------

# (backbone, input side, expected regions): CNNs give (side / stride)^2 cells, ViT 1 + patches.
ENCODER_CASES = [
    ("small_cnn", 32, 16),
    pytest.param("resnet18", 64, 4),
    pytest.param("resnet34", 64, 4, marks=pytest.mark.slow),
    pytest.param("resnet50", 64, 4, marks=pytest.mark.slow),
    pytest.param("convnext_tiny", 64, 4, marks=pytest.mark.slow),
    pytest.param("vit_b_16", 32, 5, marks=pytest.mark.slow),
]


def test_encoder_cases_cover_every_backbone() -> None:
    # pytest.param gives a ParameterSet (itself a tuple) holding the values
    names = [getattr(case, "values", case)[0] for case in ENCODER_CASES]
    assert sorted(names) == sorted(BACKBONES)


@pytest.mark.parametrize(("name", "side", "regions"), ENCODER_CASES)
def test_image_encoder_gives_regions_in_the_shared_width(name: str, side: int, regions: int):
    torch.manual_seed(0)
    encoder = build_image_encoder(name, out_dim=16, image_size=side).eval()
    images = torch.randn(2, 3, side, side)
    with torch.no_grad():
        features = encoder(images)
    assert features.shape == (2, regions, 16)
    assert torch.isfinite(features).all()
    # Regions differ from each other (positions are added) and from image to image.
    if regions > 1:
        assert not torch.allclose(features[0, 0], features[0, 1])
    assert not torch.allclose(features[0], features[1])


def test_small_cnn_grid_follows_the_input_size_and_trains() -> None:
    encoder = build_image_encoder("small_cnn", out_dim=8, channels=(4, 8, 8))
    assert encoder(torch.randn(2, 3, 64, 48)).shape == (2, 8 * 6, 8)
    encoder(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())


def test_torchvision_checkpoint_loads_with_any_head(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None, num_classes=10)  # another head
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    encoder = build_image_encoder("resnet18", out_dim=8, checkpoint=path, freeze_backbone=True)
    trunk = encoder.backbone.trunk
    assert torch.equal(trunk.conv1.weight, source.conv1.weight)
    assert torch.equal(trunk.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    # Frozen: no gradients into the backbone, and BatchNorm keeps the checkpoint statistics.
    encoder.train()
    assert not encoder.backbone.training and encoder.projection.training
    assert not any(p.requires_grad for p in encoder.backbone.parameters())
    # Only the head may differ: another architecture's weights are refused, naming the keys.
    with pytest.raises(CheckpointMismatchError, match=r"does not fit ResNet: missing.*layer1\.2"):
        build_image_encoder("resnet34", out_dim=8, checkpoint=path)


def test_missing_checkpoint_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "resnet18-f37072fd.pth"
    with pytest.raises(FileNotFoundError, match=r"resnet18-f37072fd\.pth does not exist.*never"):
        build_image_encoder("resnet18", out_dim=8, checkpoint=missing)


def test_mismatched_checkpoint_names_the_keys(tmp_path: Path) -> None:
    other = build_image_encoder("small_cnn", out_dim=8, channels=(4, 8)).backbone
    path = tmp_path / "small.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"small\.pth.*missing \(\d+\): trunk\.3"):
        build_image_encoder("small_cnn", out_dim=8, channels=(4, 8, 16), checkpoint=path)
    with pytest.raises(CheckpointMismatchError, match=r"wrong shape.*trunk\.0\.0\.weight"):
        build_image_encoder("small_cnn", out_dim=8, channels=(6, 8), checkpoint=path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="cannot read"):
        build_image_encoder("small_cnn", out_dim=8, checkpoint=garbage)
    with pytest.raises(ValueError, match="unknown image backbone 'resnet19'"):
        build_image_encoder("resnet19", out_dim=8)


def test_vit_checkpoint_positions_are_resized() -> None:
    # A 32-pixel checkpoint (2x2 patches + class token) used at 48 pixels (3x3 + 1).
    state = {"encoder.pos_embedding": torch.randn(1, 5, 8), "conv_proj.bias": torch.zeros(8)}
    adapted = _vit_position_adapter(image_size=48, patch_size=16)(state)
    assert adapted["encoder.pos_embedding"].shape == (1, 10, 8)
    assert torch.equal(
        adapted["encoder.pos_embedding"][:, :1], state["encoder.pos_embedding"][:, :1]
    )


def test_captioner_forward_exports_with_a_dynamic_batch() -> None:
    torch.manual_seed(0)
    task = _tiny_task(train_tokenizer(["a cat", "a dog"], kind="char")).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        task, (torch.randn(2, 3, 32, 32),), dynamic_shapes={"images": {0: batch}}
    )
    images = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(program.module()(images), task(images))


# --- the task ------------------------------------------------------------------------------


def _tiny_task(tokenizer, width: int = 32, **kwargs) -> ImageCaptioning:
    return ImageCaptioning(
        tokenizer=tokenizer,
        encoder=build_image_encoder("small_cnn", out_dim=width, channels=(16, 32)),
        embedding=functools.partial(SharedEmbedding, embedding_dim=32),
        decoder=functools.partial(
            TransformerTextDecoder, num_layers=1, num_heads=2, ffn_dim=128, dropout=0.0
        ),
        width=width,
        **kwargs,
    )


def _overfit_samples(corpus: Path, count: int) -> list[CaptionSample]:
    """``count`` training images of different emoji, each with its longest reference as the
    caption to learn (BLEU-4 needs 4-grams; many names are 1-2 words) and all its references
    to be scored against."""
    records = load_coco_captions(corpus / "train.json", corpus / "images")
    one_per_emoji = list({record.references[0]: record for record in records}.values())
    transform = eval_transform(32)
    return [
        CaptionSample(
            transform(Image.open(record.path).convert("RGB")),
            max(record.references, key=len),
            record.references,
            record.image_id,
        )
        for record in one_per_emoji[:count]
    ]


def test_overfit_a_few_images_greedy_reproduces_the_references(tiny_corpus: Path) -> None:
    torch.manual_seed(0)
    samples = _overfit_samples(tiny_corpus, 6)
    captions = [sample.caption for sample in samples]
    tokenizer = train_tokenizer(captions, kind="bpe", vocab_size=80)
    task = _tiny_task(tokenizer, label_smoothing=0.0)
    batch = collate_captions(samples, tokenizer)
    optimizer = torch.optim.AdamW(task.parameters(), lr=3e-3)
    task.train()
    for _ in range(300):
        loss = task.teacher_forcing_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    task.eval()
    greedy = task.caption(batch["images"], beam_size=1)
    scores = caption_scores(
        {sample.image_id: hypothesis for sample, hypothesis in zip(samples, greedy, strict=True)},
        {sample.image_id: list(sample.references) for sample in samples},
    )
    assert scores["bleu_4"] > 0.9, (greedy, captions)
    assert greedy == [tokenizer.decode(tokenizer.encode(c)) for c in captions]


def test_beam_search_is_no_worse_than_greedy_on_model_outputs() -> None:
    torch.manual_seed(3)
    texts = [f"word{i} thing{j}" for i in range(8) for j in range(8)]
    tokenizer = train_tokenizer(texts, kind="bpe", vocab_size=60)
    task = _tiny_task(tokenizer).eval()
    images = torch.randn(5, 3, 32, 32)
    options = dict(length_penalty=0.0, max_length=6)  # score = log-likelihood
    greedy = task.generate(images, beam_size=1, **options)
    beam = task.generate(images, beam_size=4, **options)
    for g, b in zip(greedy, beam, strict=True):
        assert b.log_likelihood >= g.log_likelihood - 1e-5
    # The search's bookkeeping agrees with scoring its output by teacher forcing.
    memory = task(images)
    for index, hyp in enumerate(beam):
        # Every hypothesis ends with the end token (the last step allows nothing else).
        assert len(hyp.tokens) < options["max_length"]
        ids = torch.tensor([[tokenizer.bos_id, *hyp.tokens]])
        with torch.no_grad():
            log_probs = task.decoder(ids, memory[index : index + 1]).log_softmax(-1)[0]
        targets = [*hyp.tokens, tokenizer.eos_id]
        expected = sum(log_probs[position, token].item() for position, token in enumerate(targets))
        assert hyp.log_likelihood == pytest.approx(expected, abs=1e-4)


def test_decoding_options_are_checked_and_tokenizer_is_checkpointed() -> None:
    tokenizer = train_tokenizer(["a cat", "a dog"], kind="char")
    with pytest.raises(ValueError, match="unknown decoding option.*'beam_width'"):
        _tiny_task(tokenizer, decoding={"beam_width": 3})
    task = _tiny_task(tokenizer, decoding={"val_beam_size": None, "beam_size": 5})
    assert task.decoding.validation_beam_size == 5
    with pytest.raises(ValueError, match="beam_size must be at least 1"):
        _tiny_task(tokenizer, decoding={"beam_size": 0})
    checkpoint: dict = {}
    task.on_save_checkpoint(checkpoint)
    restored = load_tokenizer_dict(checkpoint["tokenizer"])
    assert restored.encode("a dog") == tokenizer.encode("a dog")


# --- configs and the training app ----------------------------------------------------------


def test_caption_experiment_composes(compose_train) -> None:
    cfg = compose_train(["experiment=caption_default"])
    validate_config(cfg)
    assert cfg.task._target_ == "mmembed.tasks.image_captioning.ImageCaptioning"
    assert cfg.task.encoder.out_dim == cfg.task.width
    assert cfg.monitor.metric == "val/cider_d" and cfg.monitor.mode == "max"
    assert cfg.tokenizer.kind == "bpe"
    assert cfg.data.data_dir.endswith("generated/captions")
    assert cfg.corpus._target_.endswith("ensure_caption_corpus")
    assert cfg.corpus.image_size == cfg.data.image_size


@pytest.mark.parametrize("encoder", ["small_cnn", "resnet18", "resnet34", "resnet50",
                                     "convnext_tiny", "vit_b_16"])  # fmt: skip
def test_every_image_encoder_config_composes(compose_train, encoder: str) -> None:
    cfg = compose_train(["experiment=caption_default", f"model/encoder@task.encoder={encoder}"])
    validate_config(cfg)
    assert cfg.task.encoder.name == encoder and cfg.task.encoder.out_dim == cfg.task.width


def test_bad_checkpoint_in_config_fails_clearly(compose_train, tmp_path: Path) -> None:
    cfg = compose_train(
        ["experiment=caption_default", f"task.encoder.checkpoint={tmp_path}/missing.pth"]
    )
    with pytest.raises(Exception, match=r"missing\.pth does not exist"):
        hydra.utils.instantiate(cfg.task.encoder)


def test_fast_dev_run_of_the_caption_experiment(compose_train, tiny_corpus, tmp_path) -> None:
    cfg = compose_train(
        ["experiment=caption_default", "debug=fast_dev_run", f"data.data_dir={tiny_corpus}",
         *TINY_CAPTIONER]
    )  # fmt: skip
    metrics = run(cfg)
    for split in ("val", "test", "test_unseen"):
        for name in ("loss", "bleu_1", "bleu_4", "rouge_l", "cider_d"):
            assert f"{split}/{name}" in metrics, f"{split}/{name}"
    assert all(torch.isfinite(torch.tensor(value)) for value in metrics.values())
    run_dir = tmp_path / "run"
    grids = sorted(p.name for p in (run_dir / "captions").glob("*.png"))
    assert grids == ["test.png", "test_unseen.png", "val_epoch_000.png"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["test/bleu_4"] == pytest.approx(metrics["test/bleu_4"])
    tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    assert tokenizer.decode(tokenizer.encode("an emoji of a cat")) == "an emoji of a cat"
