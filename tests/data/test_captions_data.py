"""Captioning data: the emoji corpus generator, COCO loading, collate, DataModule, metrics."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers.bad_files import latin1_text
from mmembed.data.coco import (
    CocoCaptionDataModule,
    CocoCaptionDataset,
    CocoFormatError,
    UnreadableImageError,
    UnreadableImageWarning,
    collate_captions,
    load_coco_captions,
)
from mmembed.datagen import captions as caption_corpus
from mmembed.datagen import cli
from mmembed.datagen.emoji_catalog import _cldr_phrase, emoji_catalog, find_emoji_font
from mmembed.metrics.captioning import (
    METRIC_NAMES,
    CaptionMetrics,
    caption_scores,
    save_caption_grid,
    tokenize,
)

SPLITS = ("train", "validation", "test", "test_unseen")
HELDOUT_SPLITS = (*SPLITS, "test_heldout")
TINY_SPEC = dict(seed=3, image_size=16, max_emoji=12)
# 12 emoji: 1 unseen (10%, at least one), 11 seen with 2 training renderings each, and held-out
# renderings of 15% of the seen emoji in validation and in test (1.65 each, rounded by largest
# remainder to 2 and 1).
TINY_COUNTS = {"train": 22, "validation": 2, "test": 1, "test_unseen": 1}


def _font_or_fail() -> Path:
    try:
        return find_emoji_font()
    except FileNotFoundError as err:
        # `make setup` installs the font; a missing one must fail the suite, not skip it
        pytest.fail(f"{err} (run `make system-deps`)")


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _font_or_fail()
    return caption_corpus.build_caption_corpus(
        tmp_path_factory.mktemp("corpus") / "captions", **TINY_SPEC
    )


def _load_split(corpus: Path, split: str) -> dict:
    return json.loads((corpus / f"{split}.json").read_text(encoding="utf-8"))


# --- corpus generator --------------------------------------------------------------------------


def test_tiny_corpus_is_valid_coco(tiny_corpus: Path) -> None:
    for split in SPLITS:
        data = _load_split(tiny_corpus, split)
        assert data["images"], f"{split} is empty"
        ids = {image["id"] for image in data["images"]}
        for image in data["images"]:
            assert {"id", "file_name", "width", "height"} <= image.keys()
            with Image.open(tiny_corpus / "images" / image["file_name"]) as picture:
                assert picture.size == (16, 16) and picture.mode == "RGB"
        captions: dict[int, list[str]] = {}
        for annotation in data["annotations"]:
            assert {"id", "image_id", "caption"} <= annotation.keys()
            assert annotation["image_id"] in ids
            captions.setdefault(annotation["image_id"], []).append(annotation["caption"])
        assert set(captions) == ids
        for references in captions.values():
            assert len(references) >= 2 and len(set(references)) == len(references)
            assert all(ref == ref.lower() and ref.strip() for ref in references)
            assert any(ref.startswith("an emoji of ") for ref in references)
    info = caption_corpus.read_corpus_info(tiny_corpus)
    assert info["spec"]["max_emoji"] == 12
    assert {split: c["images"] for split, c in info["counts"].items()} == TINY_COUNTS


def test_split_design_seen_renderings_and_unseen_emoji(tiny_corpus: Path) -> None:
    images = {split: _load_split(tiny_corpus, split)["images"] for split in SPLITS}
    files = {split: {image["file_name"] for image in images[split]} for split in SPLITS}
    emoji = {split: {image["emoji"] for image in images[split]} for split in SPLITS}
    for index, first in enumerate(SPLITS):
        for second in SPLITS[index + 1 :]:
            assert not files[first] & files[second], (first, second)
    assert len(emoji["train"] | emoji["test_unseen"]) == 12
    # Validation and test: new renderings of trained emoji, different emoji in each.
    assert emoji["validation"] <= emoji["train"] and emoji["test"] <= emoji["train"]
    assert not emoji["validation"] & emoji["test"]
    # test_unseen: emoji never trained on.
    assert not emoji["test_unseen"] & emoji["train"]
    renderings = [image["emoji"] for image in images["train"]]
    assert all(renderings.count(text) == 2 for text in emoji["train"])
    # A held-out rendering is a different picture of its emoji, not a copy.
    held_out = images["test"][0]
    trained = [image for image in images["train"] if image["emoji"] == held_out["emoji"]]
    pictures = {
        (tiny_corpus / "images" / image["file_name"]).read_bytes() for image in [held_out, *trained]
    }
    assert len(pictures) == 3
    image_ids = [image["id"] for split in SPLITS for image in images[split]]
    assert len(image_ids) == len(set(image_ids))
    annotation_ids = [
        a["id"] for split in SPLITS for a in _load_split(tiny_corpus, split)["annotations"]
    ]
    assert len(annotation_ids) == len(set(annotation_ids))


def test_no_unseen_split_when_its_fraction_is_zero(tmp_path: Path) -> None:
    _font_or_fail()
    spec = {**TINY_SPEC, "max_emoji": 6, "unseen_fraction": 0.0, "train_renderings": 1}
    corpus = caption_corpus.ensure_caption_corpus(tmp_path / "c", **spec)
    assert not (corpus / "test_unseen.json").exists()
    assert len(_load_split(corpus, "train")["images"]) == 6
    stamp = (corpus / "corpus.json").stat().st_mtime_ns
    caption_corpus.ensure_caption_corpus(corpus, **spec)  # complete without it: reused
    assert (corpus / "corpus.json").stat().st_mtime_ns == stamp


# Two small categories: a Unicode subgroup, and a group given as group/subgroup.
HELDOUT = ["Animals & Nature/animal-bird", "Flags/subdivision-flag"]


def _in_heldout(category: str) -> bool:
    return category in HELDOUT or category.split("/")[0] in HELDOUT


@pytest.fixture(scope="module")
def heldout_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _font_or_fail()
    return caption_corpus.build_caption_corpus(
        tmp_path_factory.mktemp("heldout") / "captions", **TINY_SPEC, heldout_categories=HELDOUT
    )


def test_default_corpus_has_no_heldout_split(tiny_corpus: Path) -> None:
    assert not (tiny_corpus / "test_heldout.json").exists()
    assert "test_heldout" not in caption_corpus.read_corpus_info(tiny_corpus)["counts"]


def test_heldout_categories_appear_only_in_test_heldout(heldout_corpus: Path) -> None:
    images = {split: _load_split(heldout_corpus, split)["images"] for split in HELDOUT_SPLITS}
    catalog = emoji_catalog(_font_or_fail())
    heldout_emoji = [emoji.text for emoji in catalog if _in_heldout(emoji.category)]
    assert len(heldout_emoji) > 10
    # every emoji of the held-out categories, once, and nothing else
    assert [image["emoji"] for image in images["test_heldout"]] == heldout_emoji
    for split in SPLITS:
        assert images[split] and not any(_in_heldout(i["category"]) for i in images[split])
    # the rest is a max_emoji=12 corpus of the other categories, as before
    counts = caption_corpus.read_corpus_info(heldout_corpus)["counts"]
    assert {split: c["images"] for split, c in counts.items()} == {
        **TINY_COUNTS,
        "test_heldout": len(heldout_emoji),
    }
    ids = [image["id"] for split in HELDOUT_SPLITS for image in images[split]]
    assert len(ids) == len(set(ids))
    for image in images["test_heldout"]:
        assert image["rendering"] == caption_corpus.HELDOUT_RENDERING
        assert (heldout_corpus / "images" / image["file_name"]).is_file()
    annotations = _load_split(heldout_corpus, "test_heldout")["annotations"]
    assert {a["image_id"] for a in annotations} == {i["id"] for i in images["test_heldout"]}

    module = CocoCaptionDataModule(
        heldout_corpus, image_size=16, extra_test_files={"test_heldout": "test_heldout.json"}
    )
    assert module.test_split_names == ["test", "test_heldout"]
    assert len(module.records("test_heldout")) == len(heldout_emoji)


def test_only_categories_builds_a_corpus_of_the_heldout_ones(
    heldout_corpus: Path, tmp_path: Path
) -> None:
    corpus = caption_corpus.build_caption_corpus(
        tmp_path / "new", seed=3, image_size=16, only_categories=HELDOUT
    )
    heldout = _load_split(heldout_corpus, "test_heldout")["images"]
    new = {split: _load_split(corpus, split)["images"] for split in SPLITS}
    assert {i["emoji"] for images in new.values() for i in images} == {i["emoji"] for i in heldout}
    assert all(_in_heldout(i["category"]) for images in new.values() for i in images)
    # the held-out test images are renderings this corpus never trains on (or tests on)
    pictures = {
        (corpus / "images" / i["file_name"]).read_bytes() for images in new.values() for i in images
    }
    for image in heldout:
        assert (heldout_corpus / "images" / image["file_name"]).read_bytes() not in pictures


def test_category_options_are_checked() -> None:
    _font_or_fail()
    with pytest.raises(ValueError, match=r"no emoji in the category \['Flagz'\].*'Flags'"):
        caption_corpus.build_caption_corpus("unused", heldout_categories=["Flagz"])
    with pytest.raises(TypeError, match="not the string 'Flags'"):
        caption_corpus.build_caption_corpus("unused", heldout_categories="Flags")
    with pytest.raises(ValueError, match="at least one category"):
        caption_corpus.build_caption_corpus("unused", only_categories=[])
    assert not Path("unused").exists()


def test_corpus_is_deterministic_and_ensure_reuses_it(
    tiny_corpus: Path, tmp_path: Path, capsys
) -> None:
    again = caption_corpus.ensure_caption_corpus(tmp_path / "again", **TINY_SPEC)
    for split in SPLITS:
        assert _load_split(again, split) == _load_split(tiny_corpus, split)
    for image in sorted((tiny_corpus / "images").iterdir()):
        assert (again / "images" / image.name).read_bytes() == image.read_bytes()

    # Same spec: nothing is rebuilt (also through the CLI entry point).
    stamp = (again / "corpus.json").stat().st_mtime_ns
    cli.main(["captions", "--out", str(again), "--seed", "3", "--image-size", "16"]
             + ["--max-emoji", "12"])  # fmt: skip
    assert (again / "corpus.json").stat().st_mtime_ns == stamp
    printed = capsys.readouterr().out
    counts = caption_corpus.read_corpus_info(again)["counts"]
    for split, figures in counts.items():
        assert f"{split}: {figures['images']} images, {figures['captions']} captions" in printed

    # Another seed: rebuilt, with other renderings.
    caption_corpus.ensure_caption_corpus(again, **{**TINY_SPEC, "seed": 4})
    assert caption_corpus.read_corpus_info(again)["spec"]["seed"] == 4
    assert not list(again.parent.glob(".again.*"))


def test_generator_refuses_to_replace_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="holds no corpus.json"):
        caption_corpus.ensure_caption_corpus(tmp_path, **TINY_SPEC)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_spec_validation() -> None:
    with pytest.raises(TypeError, match="unknown caption corpus option"):
        caption_corpus.ensure_caption_corpus("unused", colour="red")
    with pytest.raises(ValueError, match="eval_fractions"):
        caption_corpus.ensure_caption_corpus("unused", eval_fractions=(0.6, 0.5))
    with pytest.raises(ValueError, match="eval_fractions"):
        caption_corpus.ensure_caption_corpus("unused", eval_fractions=(0.1, 0.0))
    with pytest.raises(ValueError, match="unseen_fraction"):
        caption_corpus.ensure_caption_corpus("unused", unseen_fraction=1.0)
    with pytest.raises(ValueError, match="train_renderings"):
        caption_corpus.ensure_caption_corpus("unused", train_renderings=0)


@pytest.mark.parametrize(
    ("text", "cldr_name", "phrase"),
    [
        ("\U0001f1e9\U0001f1ea", "flag: Germany", "flag of germany"),
        ("\U0001f469\u200d\U0001f9b0", "woman: red hair", "woman with red hair"),
        ("\U0001f468\u200d\U0001f469\u200d\U0001f466", "family: man, woman, boy",
         "family of man, woman and boy"),
        ("#\ufe0f\u20e3", "keycap: #", "keycap number sign"),
        ("\U0001f51f", "keycap: 10", "keycap ten"),
        ("\U0001f44d\U0001f3fd", "thumbs up: medium skin tone", "thumbs up with medium skin tone"),
        ("\U0001f34e", "red apple", "red apple"),
    ],
)  # fmt: skip
def test_cldr_names_become_phrases(text: str, cldr_name: str, phrase: str) -> None:
    assert _cldr_phrase(text, cldr_name) == phrase


def test_catalog_without_unicode_data_uses_single_code_points() -> None:
    catalog = emoji_catalog(_font_or_fail(), emoji_test_file=None, annotation_files=())
    assert len(catalog) > 1000
    assert all(len(emoji.text) == 1 for emoji in catalog)
    by_text = {emoji.text: emoji for emoji in catalog}
    assert by_text["\U0001f600"].references == ("grinning face", "an emoji of grinning face")


# --- COCO loading ------------------------------------------------------------------------------


def _write_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size + 4), colour).save(path)


def _write_coco(folder: Path, images: list, annotations: list, name: str = "data.json") -> Path:
    path = folder / name
    path.write_text(json.dumps({"images": images, "annotations": annotations}), encoding="utf-8")
    return path


@pytest.fixture
def coco_dir(tmp_path: Path) -> Path:
    for index, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)], start=1):
        _write_image(tmp_path / "images" / f"{index}.png", colour)
    images = [{"id": i, "file_name": f"{i}.png", "width": 20, "height": 24} for i in (1, 2, 3)]
    annotations = [
        {"id": 1, "image_id": 1, "caption": "A red square."},
        {"id": 2, "image_id": 2, "caption": "a green square"},
        {"id": 3, "image_id": 1, "caption": "red block"},
        {"id": 4, "image_id": 3, "caption": "a blue square"},
        {"id": 5, "image_id": 1, "caption": "a square that is red"},
    ]
    for split in ("train", "validation", "test"):
        _write_coco(tmp_path, images, annotations, f"{split}.json")
    return tmp_path


def test_load_keeps_every_reference(coco_dir: Path) -> None:
    records = load_coco_captions(coco_dir / "train.json", coco_dir / "images")
    assert [r.image_id for r in records] == [1, 2, 3]
    assert records[0].references == ("A red square.", "red block", "a square that is red")
    assert records[0].path == coco_dir / "images" / "1.png"


def test_unknown_image_id_names_file_and_index(coco_dir: Path) -> None:
    path = _write_coco(
        coco_dir,
        [{"id": 1, "file_name": "1.png"}],
        [{"image_id": 1, "caption": "ok"}, {"image_id": 42, "caption": "orphan"}],
    )
    with pytest.raises(CocoFormatError, match=r"data\.json: annotations\[1\].*unknown image id 42"):
        load_coco_captions(path, coco_dir / "images")


def test_missing_image_file_names_id_and_path(coco_dir: Path) -> None:
    path = _write_coco(
        coco_dir,
        [{"id": 1, "file_name": "1.png"}, {"id": 7, "file_name": "gone.png"}],
        [{"image_id": 1, "caption": "a"}, {"image_id": 7, "caption": "b"}],
    )
    with pytest.raises(FileNotFoundError, match=r"data\.json.*image id 7.*gone\.png"):
        load_coco_captions(path, coco_dir / "images")


def test_invalid_json_and_missing_keys_name_the_file(coco_dir: Path) -> None:
    broken = coco_dir / "broken.json"
    broken.write_text('{"images": [', encoding="utf-8")
    with pytest.raises(CocoFormatError, match=r"broken\.json: not valid JSON.*line 1"):
        load_coco_captions(broken, coco_dir / "images")
    no_caption = _write_coco(coco_dir, [{"id": 1, "file_name": "1.png"}], [{"image_id": 1}])
    with pytest.raises(CocoFormatError, match=r"data\.json: annotations\[0\] has no 'caption'"):
        load_coco_captions(no_caption, coco_dir / "images")
    no_images = coco_dir / "no_images.json"
    no_images.write_text('{"annotations": []}', encoding="utf-8")
    with pytest.raises(CocoFormatError, match=r"no_images\.json: 'images' must be a list"):
        load_coco_captions(no_images, coco_dir / "images")
    latin1 = coco_dir / "latin1.json"
    latin1_text(latin1, '{"images": [],\n "annotations": [{"caption": "caf\u00e9"}]}')
    with pytest.raises(CocoFormatError, match=r"latin1\.json:2: not UTF-8 text"):
        load_coco_captions(latin1, coco_dir / "images")
    bad_id = _write_coco(coco_dir, [{"id": "1", "file_name": "1.png"}], [])
    with pytest.raises(CocoFormatError, match=r"images\[0\]: 'id' must be int"):
        load_coco_captions(bad_id, coco_dir / "images")


def test_corrupt_image_is_skipped_with_warning_or_raises_when_strict(coco_dir: Path) -> None:
    (coco_dir / "images" / "2.png").write_bytes(b"not a png at all")
    skipped = r"(?s)skipped 1 of 3 images.*unreadable image.*2\.png"
    with pytest.warns(UnreadableImageWarning, match=skipped):
        records = load_coco_captions(coco_dir / "train.json", coco_dir / "images")
    assert [r.image_id for r in records] == [1, 3]
    with pytest.raises(UnreadableImageError, match=r"image id 2.*2\.png"):
        load_coco_captions(coco_dir / "train.json", coco_dir / "images", strict=True)


def test_captions_that_normalise_to_nothing_are_counted_skips(coco_dir: Path) -> None:
    path = _write_coco(
        coco_dir,
        [{"id": 1, "file_name": "1.png"}, {"id": 2, "file_name": "2.png"}],
        [
            {"image_id": 1, "caption": "a red square"},
            {"image_id": 1, "caption": "\U0001f7e5\u2764!"},  # symbols only
            {"image_id": 2, "caption": "\u8d64\u3044\u56db\u89d2"},  # another script only
        ],
    )
    skipped_items: list = []
    listing = r"(?s)skipped 2 of 3 captions.*annotations\[1\] \(image id 1\).*annotations\[2\]"
    with pytest.warns(UserWarning, match=listing):
        records = load_coco_captions(path, coco_dir / "images", skipped=skipped_items)
    # image 2 has no usable caption left, so it cannot be trained on or scored
    assert [(r.image_id, r.references) for r in records] == [(1, ("a red square",))]
    assert [item.kind for item in skipped_items] == ["unrepresentable caption"] * 2
    with pytest.raises(CocoFormatError, match=r"annotations\[1\] \(image id 1\).*unrepresentable"):
        load_coco_captions(path, coco_dir / "images", strict=True)


# --- dataset, collate, DataModule --------------------------------------------------------------


class StubTokenizer:
    """One id per character, after the three special ids."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def encode(self, text: str) -> list[int]:
        return [3 + ord(ch) % 40 for ch in text]


def test_dataset_modes_and_collate_shapes(coco_dir: Path) -> None:
    records = load_coco_captions(coco_dir / "train.json", coco_dir / "images")
    train = CocoCaptionDataset(records, mode="train")
    evaluation = CocoCaptionDataset(records, mode="eval")
    assert len(train) == 5 and len(evaluation) == 3
    assert [train[i].caption for i in range(3)] == list(records[0].references)
    assert evaluation[0].references == records[0].references

    samples = [train[0], train[3]]  # "A red square." (13 chars), "a green square" (14)
    batch = collate_captions(samples, StubTokenizer())
    assert batch["images"].shape == (2, 3, 24, 20) and batch["images"].dtype == torch.float32
    assert batch["image_ids"].tolist() == [1, 2]
    assert batch["lengths"].tolist() == [14, 15]
    assert batch["input_ids"].shape == batch["target_ids"].shape == (2, 15)
    tokens = StubTokenizer().encode("A red square.")
    assert batch["input_ids"][0].tolist() == [1, *tokens, 0]
    assert batch["target_ids"][0].tolist() == [*tokens, 2, 0]
    assert batch["references"][1] == ["a green square"]

    capped = collate_captions(samples, StubTokenizer(), max_length=4)
    assert capped["input_ids"].shape == (2, 4) and capped["lengths"].tolist() == [4, 4]
    assert capped["target_ids"][0].tolist() == tokens[:4]
    assert "input_ids" not in collate_captions(samples)


def test_corpus_step_leaves_someone_elses_coco_folder_alone(coco_dir: Path) -> None:
    before = sorted(p.name for p in coco_dir.iterdir())
    with pytest.raises(FileExistsError, match="refusing to replace.*corpus=none"):
        caption_corpus.ensure_caption_corpus(coco_dir, max_emoji=4)
    assert sorted(p.name for p in coco_dir.iterdir()) == before


def test_datamodule_loaders(coco_dir: Path) -> None:
    module = CocoCaptionDataModule(coco_dir, batch_size=4, image_size=16)
    assert module.training_texts()[:3] == ["A red square.", "red block", "a square that is red"]
    with pytest.raises(RuntimeError, match="set_tokenizer"):
        module.train_dataloader()
    module.set_tokenizer(StubTokenizer())
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["images"].shape == (4, 3, 16, 16)
    assert batch["input_ids"].shape[0] == 4
    val = list(module.val_dataloader())
    assert sum(len(b["image_ids"]) for b in val) == 3
    assert val[0]["references"][0] == ["A red square.", "red block", "a square that is red"]
    with pytest.raises(TypeError, match="lacks"):
        module.set_tokenizer(object())


def test_datamodule_uses_generated_corpus(tiny_corpus: Path) -> None:
    module = CocoCaptionDataModule(tiny_corpus, batch_size=3, image_size=16)
    stamp = (tiny_corpus / "corpus.json").stat().st_mtime_ns
    # same spec: reused, not rebuilt
    caption_corpus.ensure_caption_corpus(tiny_corpus, seed=3, max_emoji=12, image_size=16)
    assert (tiny_corpus / "corpus.json").stat().st_mtime_ns == stamp
    train = _load_split(tiny_corpus, "train")
    assert module.training_texts() == [a["caption"] for a in train["annotations"]]
    module.set_tokenizer(StubTokenizer())
    module.setup("test")
    batch = next(iter(module.test_dataloader()))
    assert batch["images"].shape[1:] == (3, 16, 16)
    assert all(len(refs) >= 2 for refs in batch["references"])

    with_unseen = CocoCaptionDataModule(
        tiny_corpus,
        batch_size=3,
        image_size=16,
        extra_test_files={"test_unseen": "test_unseen.json"},
    )
    with_unseen.set_tokenizer(StubTokenizer())
    assert with_unseen.test_split_names == ["test", "test_unseen"]
    loaders = with_unseen.test_dataloader()
    unseen_ids = [image["id"] for image in _load_split(tiny_corpus, "test_unseen")["images"]]
    assert [b["image_ids"].tolist() for b in loaders[1]] == [unseen_ids]
    with pytest.raises(ValueError, match="reuse the split names"):
        CocoCaptionDataModule(tiny_corpus, extra_test_files={"test": "test_unseen.json"})


# --- metrics -----------------------------------------------------------------------------------

REFERENCES = {
    1: ["a red apple on a wooden table", "an apple that is red"],
    2: ["a brown dog running in the park", "a dog runs on grass"],
    3: ["the flag of germany waving", "an emoji of the flag of germany"],
}


def test_identical_captions_score_perfectly() -> None:
    scores = caption_scores({k: v[0] for k, v in REFERENCES.items()}, REFERENCES)
    assert set(scores) == set(METRIC_NAMES)
    assert scores["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert scores["rouge_l"] == pytest.approx(1.0)
    assert scores["cider_d"] > 1.0


def test_wrong_captions_score_lower_and_any_reference_counts() -> None:
    right = caption_scores({k: v[0] for k, v in REFERENCES.items()}, REFERENCES)
    wrong = caption_scores(
        {1: "a brown dog running in the park", 2: "the flag of france", 3: "a red apple"},
        REFERENCES,
    )
    for name in METRIC_NAMES:
        assert wrong[name] < right[name], name
    # Matching the second reference is as good as matching the first.
    second = caption_scores({k: v[1] for k, v in REFERENCES.items()}, REFERENCES)
    assert second["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    # Case and punctuation are not the model's fault.
    shouted = {k: v[0].upper() + "!" for k, v in REFERENCES.items()}
    assert caption_scores(shouted, REFERENCES) == pytest.approx(right)
    assert tokenize("Côte d'Ivoire: ten-thirty, o'clock!") == "cote d'ivoire ten thirty o'clock"


def test_caption_scores_checks_ids() -> None:
    with pytest.raises(ValueError, match="without hypothesis"):
        caption_scores({1: "a"}, {1: ["a"], 2: ["b"]})
    with pytest.raises(ValueError, match="non-empty list"):
        caption_scores({1: "a"}, {1: []})


def test_caption_metrics_accumulates_and_dedupes() -> None:
    metric = CaptionMetrics()
    metric.update(torch.tensor([1, 2]), [REFERENCES[1][0], "a dög"], [REFERENCES[1], REFERENCES[2]])
    metric.update([3, 1], [REFERENCES[3][0], "ignored repeat"], [REFERENCES[3], REFERENCES[1]])
    hypotheses, references = metric.texts()
    assert hypotheses == {1: REFERENCES[1][0], 2: "a dög", 3: REFERENCES[3][0]}
    assert references == REFERENCES
    result = metric.compute()
    expected = {**caption_scores(hypotheses, references), "diversity": 1.0}
    assert {k: float(v) for k, v in result.items()} == pytest.approx(expected)
    metric.reset()
    assert metric.texts() == ({}, {})


def _ddp_worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    metric = CaptionMetrics()
    if rank == 0:  # rank 1 saw no batch at all: the empty-rank corner case
        ids = sorted(REFERENCES)
        metric.update(ids, [REFERENCES[i][0] for i in ids], [REFERENCES[i] for i in ids])
    result = {k: float(v) for k, v in metric.compute().items()}
    metric.reset()
    if rank == 1:
        metric.update([2], ["a dog"], [REFERENCES[2]])
    else:
        metric.update([1, 3], ["an apple", "a flag"], [REFERENCES[1], REFERENCES[3]])
    split_result = {k: float(v) for k, v in metric.compute().items()}
    if rank == 0:
        Path(out_file).write_text(json.dumps([result, split_result]))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_caption_metrics_gathers_across_ddp_ranks(tmp_path: Path) -> None:
    out_file = tmp_path / "scores.json"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True
    )
    full, split = json.loads(out_file.read_text())
    assert full == pytest.approx(
        {**caption_scores({k: v[0] for k, v in REFERENCES.items()}, REFERENCES), "diversity": 1.0}
    )
    expected = caption_scores({1: "an apple", 2: "a dog", 3: "a flag"}, REFERENCES)
    assert split == pytest.approx({**expected, "diversity": 1.0})


def test_caption_grid_png(tmp_path: Path) -> None:
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    images = torch.randn(5, 3, 16, 16)
    path = save_caption_grid(
        images,
        ["a generated caption that is long enough to wrap over two lines"] * 5,
        [["ref one", "ref two"]] * 5,
        tmp_path / "grid" / "captions.png",
        max_items=4,
        mean=mean,
        std=std,
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.size[0] > 100 and image.size[1] > 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL images and no references work too
        save_caption_grid([Image.new("RGB", (8, 8))], ["x"], None, tmp_path / "one.png")
