"""The multimodal task: one table and one space over the three tasks, trained end to end."""

import functools
import json
import shutil
from types import SimpleNamespace

import hydra
import pytest
import torch
import torch.nn.functional as F

from conftest import multimodal_overrides
from mmembed import SharedEmbedding
from mmembed.data.multimodal import MultimodalDataModule
from mmembed.data.skips import PATHS, SKIPPED, SkippedItem
from mmembed.export import export_program
from mmembed.models.audio import build_audio_encoder
from mmembed.tasks.speech_recognition import SpeechRecognition
from mmembed.text import CharacterView, train_tokenizer
from mmembed.train import run
from mmembed.transfer import InitFromError, init_from

TRANSCRIPTS = ["the cat sat", "a dog ran far", "moving left"]


def build(compose_train, corpora, *overrides):
    """The data module and the model of the tiny multimodal config, with its tokenizer."""
    cfg = compose_train(multimodal_overrides(corpora, *overrides))
    data = hydra.utils.instantiate(cfg.data)
    tokenizer = hydra.utils.instantiate(cfg.tokenizer)(data.training_texts())
    data.set_tokenizer(tokenizer)
    return data, hydra.utils.instantiate(cfg.task, tokenizer=tokenizer)


def test_the_parts_share_one_table_and_one_text_encoder(compose_train, multimodal_corpora):
    _, model = build(compose_train, multimodal_corpora)
    table = model.embedding
    # CTC reads the character rows of the table, under the character view's ids
    assert model.speech.embedding.table is table and model.captions.embedding is table
    assert model.captions.decoder.embedding is table and model.video.embedding is table
    assert model.video.label_encoder is model.text_encoder
    assert model.text_encoder.embedding is table
    # one copy of the table among the trainable parameters (what the optimizer updates)
    shaped = [p for p in model.parameters() if p.shape == table.weight.shape]
    assert len(shaped) == 1 and shaped[0] is table.weight
    characters = model.speech.tokenizer
    assert isinstance(characters, CharacterView)
    assert model.speech.embedding.rows.tolist() == characters.rows
    logits = model.speech.ctc_head(torch.randn(2, model.width))
    assert logits.shape == (2, characters.vocab_size) < (2, model.tokenizer.vocab_size)


def test_every_id_any_part_feeds_the_table_has_its_row(compose_train, multimodal_corpora):
    """Transcripts (as characters), captions, class names and spoken captions all tokenise
    into rows of the one table, with no <unk> for anything in the training texts."""
    data, model = build(compose_train, multimodal_corpora)
    data.setup("fit")
    rows = model.embedding.num_embeddings
    unk = model.tokenizer.unk_id
    used: dict[str, set[int]] = {}
    row_of = model.speech.embedding.rows  # character ids -> rows of the table
    for part in ("speech", "spoken"):
        batch = next(iter(data.parts[part].loader("train")))
        used[part] = set(row_of[batch["tokens"][batch["tokens"] > 0]].tolist())
        text_ids, _ = model.text_encoder.tokenize(batch["texts"])
        used[f"{part} text"] = set(text_ids.flatten().tolist())
    captions = next(iter(data.parts["captions"].loader("train")))
    used["captions"] = set(captions["input_ids"].flatten().tolist())
    names = data.parts["video"].class_names
    used["class names"] = set(model.text_encoder.tokenize(names)[0].flatten().tolist())
    for part, ids in used.items():
        assert ids and max(ids) < rows, part
        assert unk not in ids, part
    # the characters CTC emits are the vocabulary's own single-character tokens
    tokens = {model.tokenizer.id_to_token(i) for i in used["speech"]}
    assert all(len(token) == 1 for token in tokens), tokens
    # and the model embeds through every one of those rows
    ids = torch.tensor(sorted(set().union(*used.values())))
    assert model.embedding(ids).shape == (len(ids), model.width)


def test_embeddings_are_unit_vectors_and_export(compose_train, multimodal_corpora):
    data, model = build(compose_train, multimodal_corpora)
    model.eval()
    waveforms, lengths = torch.randn(2, 16000), torch.tensor([16000, 9000])
    images, clips = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 4, 32, 32)
    ids, mask = model.text_encoder.tokenize(["moving left", "a cat"])
    batch = torch.export.Dim("batch", min=1, max=64)
    cases = {
        "audio": ((waveforms, lengths),
                  ({0: batch, 1: torch.export.Dim("samples", min=1600, max=16000 * 30)},
                   {0: batch})),
        "image": ((images,), ({0: batch},)),
        "video": ((clips,), ({0: batch},)),
        "text": ((ids, mask), ({0: batch, 1: torch.export.Dim("tokens", min=2, max=64)},) * 2),
    }  # fmt: skip
    with torch.no_grad():
        direct = {
            "audio": model.embed_audio(waveforms, lengths),
            "image": model.embed_image(images),
            "video": model.embed_video(clips),
            "text": model.embed_text(["moving left", "a cat"]),
        }
        for modality, (args, dynamic) in cases.items():
            vectors = direct[modality]
            assert vectors.shape == (2, model.width)
            torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(2))
            program = export_program(model.embedder(modality), args, dynamic)
            torch.testing.assert_close(program.module()(*args), vectors, atol=1e-5, rtol=1e-4)
            # another batch size (and length) through the same program
            other = tuple(torch.cat([a, a[:1]]) for a in args)
            expected = model.embedder(modality)(*other)
            torch.testing.assert_close(program.module()(*other), expected, atol=1e-5, rtol=1e-4)
        # several clips per video: their mean, renormalised
        two_clips = torch.stack([clips, clips.flip(0)], dim=1)
        torch.testing.assert_close(model.embed_video(two_clips).norm(dim=-1), torch.ones(2))


def test_unknown_objectives_and_mismatched_units_fail_clearly(compose_train, multimodal_corpora):
    with pytest.raises(Exception, match="unknown objective.*'audio_txt'"):
        build(compose_train, multimodal_corpora, "+task.weights.audio_txt=1.0")
    cfg = compose_train(multimodal_overrides(multimodal_corpora, "task.speech_units=subword",
                                             "debug=fast_dev_run"))  # fmt: skip
    with pytest.raises(ValueError, match="data.speech_units=subword"):
        run(cfg)


def asr_checkpoint(tmp_path, width=32, embedding_dim=16):
    """A small recogniser's checkpoint (char tokenizer), as an asr_default run saves it."""
    tokenizer = train_tokenizer(TRANSCRIPTS, kind="char")
    # the architecture of the tiny multimodal config's speech encoder (experiment=asr_default's)
    encoder = build_audio_encoder(out_dim=width, n_mels=40, d_model=32, num_layers=1,
                                  num_heads=2, ffn_dim=64, subsampling="conv1d",
                                  subsampling_channels=8)  # fmt: skip
    task = SpeechRecognition(
        encoder, tokenizer=tokenizer, width=width,
        embedding=functools.partial(SharedEmbedding, embedding_dim=embedding_dim),
    )  # fmt: skip
    path = tmp_path / "asr.ckpt"
    torch.save({"state_dict": task.state_dict(), "tokenizer": tokenizer.to_dict()}, path)
    return task, path


def test_init_from_maps_a_recognisers_encoder_and_table_into_the_model(
    compose_train, multimodal_corpora, tmp_path
):
    source, checkpoint = asr_checkpoint(tmp_path)
    _, model = build(compose_train, multimodal_corpora)
    decoder_before = {k: v.clone() for k, v in model.captions.decoder.layers.state_dict().items()}
    speech_parts = {"encoder": "speech.encoder", "embedding": "embedding"}
    report = init_from(model, checkpoint, prefixes=speech_parts)
    for name, value in source.encoder.state_dict().items():
        assert torch.equal(model.speech.encoder.state_dict()[name], value), name
    assert torch.equal(model.embedding.projection.weight, source.embedding.projection.weight)
    # table rows follow their characters; the recogniser's space is the subword word marker
    old, new = source.tokenizer, model.tokenizer
    for char in set("".join(TRANSCRIPTS)):
        new_id = new.token_to_id("\u2581" if char == " " else char)
        old_row = source.embedding.weight[old.token_to_id(char)]
        assert torch.equal(model.embedding.weight[new_id], old_row), char
    assert report.unmapped > 0  # the caption decoder, the video encoder, ... left alone
    for name, value in model.captions.decoder.layers.state_dict().items():
        assert torch.equal(value, decoder_before[name]), name
    missing = r"captions\.decoder\..* \(missing from the checkpoint"
    with pytest.raises(InitFromError, match=missing):
        init_from(model, checkpoint, prefixes={"decoder": "captions.decoder"})


@pytest.mark.slow
def test_fast_dev_run_of_the_multimodal_experiment(compose_train, multimodal_corpora, tmp_path):
    # started from a recogniser's encoder, frozen for the (one) epoch, as users build it
    _, checkpoint = asr_checkpoint(tmp_path)
    parts = f"[{{path: {checkpoint}, prefixes: {{encoder: speech.encoder}}}}]"
    cfg = compose_train(multimodal_overrides(
        multimodal_corpora, "debug=fast_dev_run", f"init_from={parts}",
        "+callbacks.freeze._target_=mmembed.callbacks.freeze.FreezeSchedule",
        "+callbacks.freeze.modules=[speech.encoder]",
    ))  # fmt: skip
    metrics = run(cfg)
    for name in ("train/loss", "train/audio_text_loss", "train/spoken_text_loss",
                 "train/image_text_loss", "train/video_text_loss", "val/speech/cer",
                 "val/captions/cider_d", "val/video/video_top1", "test/speech/wer",
                 "test/captions/bleu_4", "test_unseen/captions/cider_d", "test/video/clip_top1",
                 "test/retrieval/spoken_image_r1", "test/retrieval/video_spoken_median_rank",
                 "val/retrieval/mean_r1", "test/zero_shot/video_phrasings_top1",
                 "test/zero_shot/images_by_spoken_names_top1",
                 # the out-of-domain test sets: each part's metrics and its retrieval
                 "test_slow/speech/cer", "test_espeak/retrieval/audio_text_r1",
                 "test_unseen/retrieval/text_image_r1", "test_ood/video/video_top1",
                 "test_ood/retrieval/video_text_median_rank",
                 "test_ood/zero_shot/video_phrasings_top1"):  # fmt: skip
        assert name in metrics, name
    assert all(0.0 <= value <= 1.0 for name, value in metrics.items() if "zero_shot" in name)
    for pair in ("audio_text", "text_audio", "image_text", "text_image", "video_text",
                 "text_video", "spoken_text", "text_spoken", "spoken_image", "image_spoken",
                 "spoken_video", "video_spoken"):
        for metric in ("r1", "r5", "r10", "median_rank"):
            assert f"test/retrieval/{pair}_{metric}" in metrics
    run_dir = tmp_path / "run"
    for folder in ("retrieval", "shared_space", "captions", "confusion_matrices"):
        assert (run_dir / folder / "test.png").read_bytes()[:4] == b"\x89PNG", folder
    assert json.loads((run_dir / "metrics.json").read_text())["train/loss"] > 0


def memorised(corpora, root):
    """The tiny corpora with validation and test replaced by the training items."""
    copies = {}
    for part, folder in corpora.items():
        copies[part] = shutil.copytree(folder, root / part)
    for split in ("validation", "test"):
        shutil.copy(copies["speech"] / "train.jsonl", copies["speech"] / f"{split}.jsonl")
        shutil.copy(copies["captions"] / "train.json", copies["captions"] / f"{split}.json")
        shutil.copy(copies["video"] / "train.csv", copies["video"] / f"{split}.csv")
        # every training image's reading, and the training readings of the class names
        lines = (copies["spoken"] / "train.jsonl").read_text().splitlines()
        captions = [line for line in lines if '"image_id"' in line]
        labels = [line for line in lines if '"label"' in line]
        (copies["spoken"] / f"{split}.jsonl").write_text("\n".join(captions) + "\n")
        (copies["spoken"] / f"labels_{split}.jsonl").write_text("\n".join(labels) + "\n")
    return copies


@pytest.mark.slow
def test_overfit_retrieves_a_handful_of_pairs_perfectly_in_every_direction(
    compose_train, multimodal_corpora, tmp_path
):
    corpora = memorised(multimodal_corpora, tmp_path / "memorised")
    cfg = compose_train(multimodal_overrides(
        corpora,
        "data.captions.augment=false", "data.captions.extra_test_files=null",
        "data.speech.extra_test_manifests=null", "data.video.extra_test_splits=null",
        "data.video.crop_scale=[1.0,1.0]", "task.speech.encoder.spec_augment=false",
        "optimizer.lr=0.006", "trainer.max_epochs=60", "trainer.max_time=null",
        "trainer.check_val_every_n_epoch=30", "task.weights.spoken_text=3.0",
        "callbacks=none", "logger=csv",
    ))  # fmt: skip
    metrics = run(cfg)
    pairs = ("audio_text", "text_audio", "image_text", "text_image", "video_text", "text_video",
             "spoken_text", "text_spoken", "spoken_image", "image_spoken", "spoken_video",
             "video_spoken")  # fmt: skip
    recalls = {pair: metrics[f"test/retrieval/{pair}_r1"] for pair in pairs}
    # Spoken captions reach 10 of their 11 readings in 60 epochs (measured with the default
    # seed at lr 0.003 and 0.006, mean or attention pooling), not all of them: one reading
    # stays confused, so those directions are held to 9 of 11; every other one is perfect.
    spoken = {"spoken_text", "text_spoken", "spoken_image", "image_spoken"}
    assert all(recalls[pair] == 1.0 for pair in recalls.keys() - spoken), f"recall@1: {recalls}"
    assert all(recalls[pair] >= 0.8 for pair in spoken), f"recall@1: {recalls}"


def test_the_data_module_mixes_every_part_each_step(compose_train, multimodal_corpora):
    data, _ = build(compose_train, multimodal_corpora)
    assert isinstance(data, MultimodalDataModule)
    data.setup("fit")
    loader = data.train_dataloader()
    batch, _, _ = next(iter(loader))
    assert set(batch) == {"speech", "captions", "video", "spoken"}
    # max_size_cycle: as many steps as the longest part, the others starting over
    lengths = [len(data.parts[name].loader("train")) for name in batch]
    assert len(loader) == max(lengths)
    assert data.eval_sets("validate") == [
        ("speech", "validation"), ("captions", "validation"), ("video", "validation"),
        ("spoken", "validation"), ("spoken_labels", "validation"),
    ]  # fmt: skip
    assert ("captions", "test_unseen") in data.eval_sets("test")
    # the tokenizer is trained on transcripts, captions and class names alike
    texts = set(data.training_texts())
    assert set(data.parts["video"].class_names) <= texts
    assert set(data.parts["speech"].training_texts()) <= texts


def test_items_that_fail_to_load_are_recorded_with_their_part(compose_train, multimodal_corpora):
    data, _ = build(compose_train, multimodal_corpora)
    data.prepare_splits()  # every split a run reads, test sets included, indexed up front
    assert ("video", "test_ood") in data.eval_sets("test")
    assert "speech/test_slow" in data.text_coverage  # its transcripts checked against the tokenizer
    bad = SkippedItem("images/x.png", "unreadable image", "cannot decode it")
    worse = SkippedItem("audio/y.wav", "unreadable", "cannot read audio")
    data.trainer = SimpleNamespace(training=True, validating=False, sanity_checking=False,
                                   testing=False)  # fmt: skip
    batch = {"captions": {PATHS: [], SKIPPED: [bad]}, "speech": {PATHS: ["a"], SKIPPED: []}}
    assert SKIPPED not in data.on_before_batch_transfer(batch, 0)["captions"]
    data.trainer = SimpleNamespace(training=False, validating=False, sanity_checking=False,
                                   testing=True)  # fmt: skip
    index = data.eval_sets("test").index(("speech", "test_slow"))
    data.on_before_batch_transfer({PATHS: [], SKIPPED: [worse]}, index)
    assert data.skipped["captions/train"] == [bad]
    assert data.skipped["speech/test_slow"] == [worse]
    assert data.take_unreported_skips() == {"captions/train": [bad], "speech/test_slow": [worse]}
    assert data.take_unreported_skips() == {}
    # another rank's skips, gathered by the end-of-epoch report, land in the right part
    data.record_load_skips("video/test_ood", [bad])
    assert data.skipped["video/test_ood"] == [bad]
    assert len(data.dataset("video/test_ood")) > 0
    with pytest.raises(KeyError, match="not <part>/<split>"):
        data.record_load_skips("test_ood", [bad])


def test_a_step_whose_items_all_failed_learns_nothing_but_reaches_every_weight(
    compose_train, multimodal_corpora
):
    _, model = build(compose_train, multimodal_corpora)
    empty = {PATHS: [], SKIPPED: []}
    loss = model.training_step({"captions": empty, "video": empty}, 0)
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="holds no part"):
        model.training_step({}, 0)


def test_images_are_classified_zero_shot_by_the_mean_of_each_names_readings(
    compose_train, multimodal_corpora
):
    _, model = build(compose_train, multimodal_corpora)
    spoken = F.normalize(torch.randn(5, model.width), dim=-1)
    images = F.normalize(torch.randn(3, model.width), dim=-1)
    texts = ["red heart", "smiling face", "red heart", "a cat", "smiling face"]
    references = [["red heart", "a heart"], ["smiling face"], ["a cat", "an animal"]]
    model._store = {
        ("spoken", "test"): {"embeddings": [spoken], "texts": texts},
        ("captions", "test"): {"embeddings": [images], "references": references, "images": []},
    }
    similarity, positives = model.retrieval_pairs("test")["zero_shot_images_by_spoken_names"]
    names = ["red heart", "smiling face", "a cat"]
    prototypes = torch.stack([
        F.normalize(sum(e for e, t in zip(spoken, texts, strict=True) if t == name), dim=0)
        for name in names
    ])  # fmt: skip
    torch.testing.assert_close(similarity, images @ prototypes.t())
    assert positives.tolist() == [[True, False, False], [False, True, False], [False, False, True]]


def test_under_ddp_every_part_shards_its_training_data(
    compose_train, multimodal_corpora, monkeypatch
):
    data, _ = build(compose_train, multimodal_corpora)
    data.setup("fit")
    seen: dict[str, list[list[list[str]]]] = {}
    for rank, world in ((0, 1), (0, 2), (1, 2)):  # alone, then the ranks of a 2-process run
        monkeypatch.setattr("mmembed.data.sampling.rank_and_world", lambda r=rank, w=world: (r, w))
        for name, loader in data.train_dataloader().iterables.items():
            seen.setdefault(name, []).append([list(map(str, batch[PATHS])) for batch in loader])
    assert set(seen) == {"speech", "captions", "video", "spoken"}
    for name, (alone, first, second) in seen.items():
        everything = [path for batch in alone for path in batch]
        shards = [[path for batch in shard for path in batch] for shard in (first, second)]
        # together the ranks read all of it, each about half (padded by repeating to even out)
        assert set(shards[0]) | set(shards[1]) == set(everything), name
        padding = max(map(len, alone))
        assert len(shards[0]) + len(shards[1]) <= len(everything) + padding, name
        assert len(first) == len(second), name  # ranks step together


# A table as wide as the model (every default config's 128 x 128), and a width above the
# number of character rows CTC reads (as 128 is above 42 in the defaults): rows learned under one
# run's projection can then be expressed exactly under another's, and the read-out fits exactly.
WIDTH = 64
AS_WIDE = (f"task.width={WIDTH}", f"task.embedding.embedding_dim={WIDTH}")


def single_task_runs(compose_train, corpora, root):
    """Tiny caption, speech and video runs under ``root/logs`` (as the default experiments
    save them), each shaped like the tiny multimodal model's part; name -> the source task."""
    _, donor = build(compose_train, corpora, *AS_WIDE)  # its tokenizer: the captioner's
    torch.manual_seed(7)
    _, other = build(compose_train, corpora, *AS_WIDE)
    speech, _ = asr_checkpoint(root, width=WIDTH, embedding_dim=WIDTH)
    sources = {
        "caption_default": (donor.captions, donor.tokenizer),
        "asr_default": (speech, speech.tokenizer),
        "video_default": (other.video, other.tokenizer),
    }
    for name, (task, tokenizer) in sources.items():
        folder = root / "logs" / name / "runs" / "r" / "checkpoints"
        folder.mkdir(parents=True)
        torch.save({"state_dict": task.state_dict(), "tokenizer": tokenizer.to_dict()},
                   folder / "last.ckpt")  # fmt: skip
    return {name: task for name, (task, _) in sources.items()}


def test_multimodal_default_starts_every_part_as_its_single_task_run(
    compose_train, multimodal_corpora, tmp_path
):
    """experiment=multimodal_default: each part gets its run's encoder (and decoder) and
    scores its tokens exactly as in its own run: the captioner reads the table (its own rows),
    the recogniser the character rows through its fitted read-out map."""
    from mmembed.train import build_tokenizer, initialize_from

    runs = single_task_runs(compose_train, multimodal_corpora, tmp_path)
    cfg = compose_train(multimodal_overrides(
        multimodal_corpora, f"paths.log_dir={tmp_path / 'logs'}", *AS_WIDE,
        experiment="multimodal_default",
    ))  # fmt: skip
    data = hydra.utils.instantiate(cfg.data)
    tokenizer = build_tokenizer(cfg, data, None)
    assert tokenizer.to_dict() == runs["caption_default"].tokenizer.to_dict()
    model = hydra.utils.instantiate(cfg.task, tokenizer=tokenizer)
    initialize_from(cfg, model, None)
    model.eval()
    asr, captioner, video = runs["asr_default"], runs["caption_default"], runs["video_default"]

    # captions: the encoder, the decoder and every row of the table as trained
    for name, value in captioner.state_dict().items():
        assert torch.equal(model.captions.state_dict()[name], value), name
    # speech: the same frames, and the same CTC logit for every token the recogniser knew...
    torch.manual_seed(0)
    waveforms, lengths = torch.randn(2, 8000) * 0.1, torch.tensor([8000, 6000])
    with torch.no_grad():
        frames, _, _ = model.speech.encode(waveforms, lengths)
        asr_frames, _, _ = asr.eval().encode(waveforms, lengths)
        ours, theirs = model.speech.ctc_head(frames), asr.ctc_head(asr_frames)
    assert torch.equal(frames, asr_frames)
    view, known = model.speech.tokenizer, asr.tokenizer
    tokens = [known.id_to_token(i) for i in range(known.vocab_size)]
    mine = [view.token_to_id(t) for t in tokens]
    theirs_ids = [known.token_to_id(t) for t in tokens]
    torch.testing.assert_close(ours[..., mine], theirs[..., theirs_ids], rtol=0, atol=1e-4)
    # ... and a character it never heard scores as its never-emitted </s>
    spelled = [view.id_to_token(i).replace("\u2581", " ") for i in range(view.vocab_size)]
    new = [i for i, t in enumerate(spelled) if known.token_to_id(t) == 1 and t != "<unk>"]
    assert new, "the captioner's vocabulary should hold characters the transcripts lack"
    end = known.token_to_id("</s>")
    for i in new:
        torch.testing.assert_close(ours[..., i], theirs[..., end], rtol=0, atol=1e-4)
    # video: its encoder and temperature (the class names are read by the new text encoder)
    for name, value in video.encoder.state_dict().items():
        assert torch.equal(model.video.encoder.state_dict()[name], value), name
    assert torch.equal(model.video.cosine_head.logit_scale, video.cosine_head.logit_scale)


@pytest.mark.slow
def test_fast_dev_run_of_multimodal_default_from_three_runs(
    compose_train, multimodal_corpora, tmp_path
):
    single_task_runs(compose_train, multimodal_corpora, tmp_path)
    cfg = compose_train(multimodal_overrides(
        multimodal_corpora, f"paths.log_dir={tmp_path / 'logs'}", "debug=fast_dev_run", *AS_WIDE,
        experiment="multimodal_default",
    ))  # fmt: skip
    metrics = run(cfg)
    # the locked parts' losses are off; the alignments and the video's label scoring train
    assert "train/speech_loss" not in metrics and "train/captions_loss" not in metrics
    for name in ("train/audio_text_loss", "train/image_text_loss", "train/video_loss",
                 "test/speech/cer", "test/captions/cider_d", "test/video/video_top1",
                 "test/retrieval/spoken_image_r1", "val/retrieval/mean_r1"):  # fmt: skip
        assert name in metrics, name


def test_multimodal_default_without_its_runs_says_which_to_train(
    compose_train, multimodal_corpora, tmp_path
):
    from mmembed.train import ConfigError

    cfg = compose_train(multimodal_overrides(
        multimodal_corpora, f"paths.log_dir={tmp_path / 'nothing'}", experiment="multimodal_default"
    ))  # fmt: skip
    which = r"init_from\[0\]: .*caption_default.*experiment=caption_default"
    with pytest.raises(ConfigError, match=which):
        run(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
