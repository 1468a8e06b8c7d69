"""Image captioning (COCO JSON): Noto Color Emoji images captioned with Unicode/CLDR names.

Two questions, two test sets. ``test.json`` holds new renderings (another background, size and
position) of emoji the model was trained on: can it caption what it has learned to recognise?
That is the number to compare models by, like COCO's test images of familiar kinds of scene.
``test_unseen.json`` holds emoji never seen in training: their names (``flag of peru``,
``koala``) can mostly not be inferred from pixels, so it measures how far compositional parts
(``face with ...``, ``flag of ...``) carry over, and stays low even for a good model.

Two options move whole Unicode categories (a group such as ``Flags``, or one subgroup such as
``Animals & Nature/animal-mammal``) between corpora, for judging a model on kinds of image it
was not designed around, and fine-tuning it on them: ``heldout_categories`` keeps them out of
every split and draws them into ``test_heldout.json`` instead; ``only_categories`` builds a
corpus of nothing else.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmembed.data.splits import SPLITS as DATA_SPLITS
from mmembed.datagen import corpus_folder
from mmembed.datagen.emoji_catalog import (
    CLDR_ANNOTATION_FILES,
    EMOJI_TEST_FILE,
    NOTO_BITMAP_SIZE,
    Emoji,
    emoji_catalog,
    find_emoji_font,
)

__all__ = [
    "DEFAULT_OUT_DIR",
    "DEFAULT_SPEC",
    "SPLITS",
    "add_arguments",
    "build_caption_corpus",
    "ensure_caption_corpus",
    "read_corpus_info",
    "run",
]

GENERATOR_VERSION = 2
SPLITS = (*DATA_SPLITS, "test_unseen", "test_heldout")
# Written only when they have images.
OPTIONAL_SPLITS = ("test_unseen", "test_heldout")
IMAGES_DIR = "images"
DEFAULT_OUT_DIR = Path("data/generated/captions")
DEFAULT_SPEC: dict[str, Any] = dict(
    seed=0,
    image_size=64,
    unseen_fraction=0.1,
    train_renderings=2,
    eval_fractions=(0.15, 0.15),
    include_skin_tones=False,
    max_emoji=None,
    font_path=None,
    heldout_categories=(),
    only_categories=None,
)
# The rendering number of the held-out images: one no split draws, so a test_heldout image is
# never an image that a corpus of those categories (only_categories) trains on.
HELDOUT_RENDERING = 1000
# The glyph covers this fraction of the image side, so its position and size vary a little.
GLYPH_SCALE_RANGE = (0.7, 0.9)
# Light, mostly pastel backgrounds: a dark one would hide the black outlines many emoji have.
BACKGROUND_SATURATION = (0.1, 0.45)
BACKGROUND_VALUE = (0.75, 1.0)
# Noto's bitmaps are 136x128 at NOTO_BITMAP_SIZE; the canvas leaves room for any overhang.
_CANVAS_SIDE = 160
_LICENSES = [
    {
        "id": 1,
        "name": "SIL Open Font License 1.1 (images drawn from Noto Color Emoji)",
        "url": "https://openfontlicense.org",
    }
]


def _normalized_spec(**spec: Any) -> dict[str, Any]:
    unknown = set(spec) - set(DEFAULT_SPEC)
    if unknown:
        raise TypeError(f"unknown caption corpus option(s): {sorted(unknown)}")
    full = {**DEFAULT_SPEC, **spec}
    full["unseen_fraction"] = float(full["unseen_fraction"])
    if not 0.0 <= full["unseen_fraction"] < 1.0:
        raise ValueError(f"unseen_fraction must be in [0, 1), got {full['unseen_fraction']}")
    if int(full["train_renderings"]) < 1:
        raise ValueError(f"train_renderings must be at least 1, got {full['train_renderings']}")
    full["train_renderings"] = int(full["train_renderings"])
    fractions = [float(f) for f in full["eval_fractions"]]
    if len(fractions) != 2 or min(fractions) <= 0 or sum(fractions) > 1:
        raise ValueError(
            "eval_fractions must be 2 positive numbers (validation, test) summing to at most 1, "
            f"got {full['eval_fractions']}"
        )
    full["eval_fractions"] = fractions
    if int(full["image_size"]) < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {full['image_size']}")
    full["image_size"] = int(full["image_size"])
    if full["max_emoji"] is not None:
        if int(full["max_emoji"]) < 1:
            raise ValueError(f"max_emoji must be positive or None, got {full['max_emoji']}")
        full["max_emoji"] = int(full["max_emoji"])
    if full["font_path"] is not None:
        full["font_path"] = str(full["font_path"])
    full["include_skin_tones"] = bool(full["include_skin_tones"])
    full["heldout_categories"] = _category_list(full["heldout_categories"], "heldout_categories")
    if full["only_categories"] is not None:
        full["only_categories"] = _category_list(full["only_categories"], "only_categories")
        if not full["only_categories"]:
            raise ValueError("only_categories must name at least one category (or be None)")
    full["version"] = GENERATOR_VERSION
    return full


def _category_list(categories: Any, option: str) -> list[str]:
    if isinstance(categories, str):
        raise TypeError(f"{option} must be a list of categories, not the string {categories!r}")
    return [str(category) for category in categories or ()]


def build_caption_corpus(
    out_dir: str | os.PathLike,
    *,
    seed: int = DEFAULT_SPEC["seed"],
    image_size: int = DEFAULT_SPEC["image_size"],
    unseen_fraction: float = DEFAULT_SPEC["unseen_fraction"],
    train_renderings: int = DEFAULT_SPEC["train_renderings"],
    eval_fractions: Sequence[float] = DEFAULT_SPEC["eval_fractions"],
    include_skin_tones: bool = DEFAULT_SPEC["include_skin_tones"],
    max_emoji: int | None = DEFAULT_SPEC["max_emoji"],
    font_path: str | os.PathLike | None = DEFAULT_SPEC["font_path"],
    heldout_categories: Sequence[str] = DEFAULT_SPEC["heldout_categories"],
    only_categories: Sequence[str] | None = DEFAULT_SPEC["only_categories"],
) -> Path:
    """Render the corpus into ``out_dir`` (replacing a corpus there) and return ``out_dir``.

    Layout: ``images/<code points>_<rendering>.png`` (RGB, ``image_size`` square), COCO
    captions files ``{train,validation,test,test_unseen}.json`` (``images[{id, file_name,
    width, height}]``, ``annotations[{id, image_id, caption}]``, file names relative to
    ``images/``) and ``corpus.json`` (spec, counts, sources, build time).

    Every rendering draws the emoji on its own random background, at its own size and offset.
    Splits:

    * ``unseen_fraction`` of the emoji are *unseen*: one rendering each in ``test_unseen.json``
      (not written when the fraction is 0), nothing in training;
    * every other (*seen*) emoji has ``train_renderings`` renderings in ``train.json``;
    * ``eval_fractions`` = (validation, test) of the seen emoji get one more, held-out
      rendering in ``validation.json`` / ``test.json`` (different emoji in the two).

    Both draws are stratified by Unicode subgroup, and skin-tone variants of one emoji are
    treated as one (they share their seen/unseen and evaluation fate). ``max_emoji`` keeps a
    random subset of that many emoji (tone variants count once).

    Categories are Unicode groups (``"Flags"``) or ``"group/subgroup"`` names
    (``"Animals & Nature/animal-bird"``), as emoji-test.txt lists them. ``only_categories``
    keeps only the emoji of those; every emoji of the ``heldout_categories`` is left out of
    all the splits above and drawn once (its own rendering) into ``test_heldout.json``.

    The output is identical for the same arguments and installed data (the options above
    never change how an emoji they keep is drawn). It is written to a temporary sibling folder
    and renamed into place at the end, so an interrupted run leaves no half-written corpus.
    """
    spec = _normalized_spec(
        seed=seed,
        image_size=image_size,
        unseen_fraction=unseen_fraction,
        train_renderings=train_renderings,
        eval_fractions=eval_fractions,
        include_skin_tones=include_skin_tones,
        max_emoji=max_emoji,
        font_path=font_path,
        heldout_categories=heldout_categories,
        only_categories=only_categories,
    )
    out_dir = Path(out_dir)
    corpus_folder.check_is_generated(out_dir, __name__)
    started = time.perf_counter()
    font_file = find_emoji_font(spec["font_path"])
    catalog = emoji_catalog(font_file, include_skin_tones=spec["include_skin_tones"])
    if spec["only_categories"] is not None:
        catalog = _in_categories(catalog, spec["only_categories"], "only_categories")
    heldout = _in_categories(catalog, spec["heldout_categories"], "heldout_categories")
    heldout_texts = {emoji.text for emoji in heldout}
    kept = [emoji for emoji in catalog if emoji.text not in heldout_texts]
    catalog = _subset(kept, spec["max_emoji"], seed)
    # Appended last, so the images before them keep their ids.
    plan = _rendering_plan(catalog, spec)
    plan += [(emoji, HELDOUT_RENDERING, "test_heldout") for emoji in heldout]
    with corpus_folder.staging(out_dir, __name__) as staging:
        (staging / IMAGES_DIR).mkdir()
        coco = {split: _empty_coco(split) for split in SPLITS}
        skipped = _render_all(plan, coco, staging, font_file, spec)
        written = {
            split: data
            for split, data in coco.items()
            if split not in OPTIONAL_SPLITS or data["images"]
        }
        for split, data in written.items():
            _write_json(staging / f"{split}.json", data)
        corpus_folder.write_info(
            staging,
            __name__,
            spec,
            {
                split: {"images": len(data["images"]), "captions": len(data["annotations"])}
                for split, data in written.items()
            },
            skipped_blank=skipped,
            sources=_sources(font_file),
            seconds=round(time.perf_counter() - started, 2),
        )
    return out_dir


def _in_categories(catalog: list[Emoji], categories: Sequence[str], option: str) -> list[Emoji]:
    """The emoji of ``catalog`` in any of ``categories`` (groups or group/subgroup names)."""
    wanted = set(categories)
    groups = {emoji.category.split("/", 1)[0] for emoji in catalog}
    unknown = sorted(wanted - groups - {emoji.category for emoji in catalog})
    if unknown:
        raise ValueError(
            f"{option}: no emoji in the categor{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
            f"use a Unicode group {sorted(groups - {''})} or a 'group/subgroup' of emoji-test.txt "
            f"({EMOJI_TEST_FILE}, Debian unicode-data)"
        )
    return [
        emoji
        for emoji in catalog
        if emoji.category in wanted or emoji.category.split("/", 1)[0] in wanted
    ]


def _subset(catalog: list[Emoji], max_emoji: int | None, seed: int) -> list[Emoji]:
    families = list(dict.fromkeys(emoji.family for emoji in catalog))
    if max_emoji is None or max_emoji >= len(families):
        return catalog
    kept = set(random.Random(f"subset:{seed}").sample(families, max_emoji))
    return [emoji for emoji in catalog if emoji.family in kept]


def _assign_groups(
    category_of: dict[str, str],
    fractions: Sequence[float],
    names: Sequence[str | None],
    seed: str,
) -> dict[str, str | None]:
    """family -> one of ``names``, spreading every Unicode subgroup over them in proportion."""
    by_category: dict[str, list[str]] = defaultdict(list)
    for family, category in category_of.items():
        by_category[category].append(family)
    rng = random.Random(seed)
    ordered: list[str] = []
    for category in sorted(by_category):
        members = by_category[category]
        rng.shuffle(members)
        ordered.extend(members)
    # Smooth weighted round robin: every split gets exactly its size, its picks evenly spaced
    # along `ordered`, so each subgroup (a contiguous run) is split in proportion.
    sizes = corpus_folder.split_sizes(len(ordered), fractions)
    credit = [0] * len(names)
    group_of: dict[str, str | None] = {}
    for family in ordered:
        credit = [c + s for c, s in zip(credit, sizes, strict=True)]
        pick = max(range(len(names)), key=credit.__getitem__)
        credit[pick] -= len(ordered)
        group_of[family] = names[pick]
    return group_of


def _rendering_plan(catalog: list[Emoji], spec: dict[str, Any]) -> list[tuple[Emoji, int, str]]:
    """(emoji, rendering number, split) for every image to draw, in catalog order."""
    category_of: dict[str, str] = {}
    for emoji in catalog:
        category_of.setdefault(emoji.family, emoji.category)
    seed = spec["seed"]
    unseen = spec["unseen_fraction"]
    if unseen > 0:
        seen_of = _assign_groups(
            category_of, (1 - unseen, unseen), ("seen", "unseen"), f"unseen:{seed}"
        )
    else:
        seen_of = dict.fromkeys(category_of, "seen")
    seen = {family: category_of[family] for family in category_of if seen_of[family] == "seen"}
    validation, test = spec["eval_fractions"]
    held_out_of = _assign_groups(
        seen,
        (1 - validation - test, validation, test),
        (None, "validation", "test"),
        f"eval:{seed}",
    )
    renderings = spec["train_renderings"]
    plan: list[tuple[Emoji, int, str]] = []
    for emoji in catalog:
        if seen_of[emoji.family] == "unseen":
            plan.append((emoji, 0, "test_unseen"))
            continue
        plan += [(emoji, number, "train") for number in range(renderings)]
        if held_out_of[emoji.family] is not None:
            plan.append((emoji, renderings, held_out_of[emoji.family]))
    return plan


def _empty_coco(split: str) -> dict[str, Any]:
    return {
        "info": {
            "description": f"Noto Color Emoji captioned with Unicode and CLDR names ({split})",
            "version": str(GENERATOR_VERSION),
            "contributor": __name__,
        },
        "licenses": _LICENSES,
        "images": [],
        "annotations": [],
    }


def _render_all(
    plan: list[tuple[Emoji, int, str]],
    coco: dict[str, dict[str, Any]],
    staging: Path,
    font_file: Path,
    spec: dict[str, Any],
) -> list[str]:
    from PIL import ImageFont

    font = ImageFont.truetype(str(font_file), NOTO_BITMAP_SIZE)
    size = spec["image_size"]
    skipped: list[str] = []
    annotation_id = 0
    for image_id, (emoji, number, split_name) in enumerate(plan, start=1):
        if emoji.text in skipped:
            continue
        # One random stream per rendering, so adding or dropping others never changes it.
        rng = random.Random(f"{spec['seed']}:{emoji.text}:{number}")
        image = _render(font, emoji.text, size, rng)
        if image is None:
            skipped.append(emoji.text)
            continue
        file_name = "-".join(f"{ord(ch):x}" for ch in emoji.text) + f"_{number}.png"
        image.save(staging / IMAGES_DIR / file_name, format="PNG")
        split = coco[split_name]
        split["images"].append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": size,
                "height": size,
                "license": 1,
                "emoji": emoji.text,
                "category": emoji.category,
                "rendering": number,
            }
        )
        for caption in emoji.references:
            annotation_id += 1
            split["annotations"].append(
                {"id": annotation_id, "image_id": image_id, "caption": caption}
            )
    return skipped


def _render(font: Any, text: str, size: int, rng: random.Random) -> Any:
    """The emoji on a random light background, at a random scale and offset (None if blank)."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (_CANVAS_SIDE, _CANVAS_SIDE), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), text, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    scale = rng.uniform(*GLYPH_SCALE_RANGE) * size / max(glyph.size)
    glyph = glyph.resize(
        (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
        Image.Resampling.LANCZOS,
    )
    hue = rng.random()
    saturation = rng.uniform(*BACKGROUND_SATURATION)
    value = rng.uniform(*BACKGROUND_VALUE)
    rgb = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value))
    image = Image.new("RGBA", (size, size), (*rgb, 255))
    offset = (rng.randint(0, size - glyph.width), rng.randint(0, size - glyph.height))
    image.alpha_composite(glyph, offset)
    return image.convert("RGB")


def _sources(font_file: Path) -> dict[str, Any]:
    return {
        "font": str(font_file),
        "emoji_list": str(EMOJI_TEST_FILE) if EMOJI_TEST_FILE.is_file() else "font cmap",
        "cldr_annotations": [str(p) for p in CLDR_ANNOTATION_FILES if p.is_file()],
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def read_corpus_info(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``corpus.json`` of a generated caption corpus, or None if there is none."""
    return corpus_folder.read_corpus_info(out_dir, __name__)


def ensure_caption_corpus(out_dir: str | os.PathLike, **spec: Any) -> Path:
    """Build the corpus unless ``out_dir`` already holds a complete one with the same spec."""
    wanted = _normalized_spec(**spec)
    info = read_corpus_info(out_dir) or {}
    files = [f"{split}.json" for split, n in info.get("counts", {}).items() if n["images"]]
    if corpus_folder.is_current(out_dir, __name__, wanted, files):
        return Path(out_dir)
    return build_caption_corpus(out_dir, **spec)


# --- CLI ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT_DIR, help="corpus folder (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SPEC["seed"])
    parser.add_argument(
        "--image-size", type=int, default=DEFAULT_SPEC["image_size"], help="image side in pixels"
    )
    parser.add_argument(
        "--unseen-fraction",
        type=float,
        default=DEFAULT_SPEC["unseen_fraction"],
        help="share of the emoji kept out of training, for test_unseen.json",
    )
    parser.add_argument(
        "--train-renderings",
        type=int,
        default=DEFAULT_SPEC["train_renderings"],
        help="training images per seen emoji (each on another background, size and position)",
    )
    parser.add_argument(
        "--eval-fractions",
        type=float,
        nargs=2,
        metavar=("VALIDATION", "TEST"),
        default=list(DEFAULT_SPEC["eval_fractions"]),
        help="shares of the seen emoji with a held-out rendering in validation / test",
    )
    parser.add_argument(
        "--include-skin-tones",
        action="store_true",
        help="also draw the ~1,800 skin-tone variants (about doubles the corpus)",
    )
    parser.add_argument(
        "--max-emoji", type=int, default=None, help="keep a random subset of this many emoji"
    )
    parser.add_argument(
        "--font-path", default=None, help="emoji font file; omit for the system's Noto Color Emoji"
    )
    parser.add_argument(
        "--heldout-categories",
        nargs="*",
        default=list(DEFAULT_SPEC["heldout_categories"]),
        metavar="CATEGORY",
        help="Unicode groups or group/subgroup names kept out of every split, drawn into "
        "test_heldout.json (e.g. Flags 'Animals & Nature')",
    )
    parser.add_argument(
        "--only-categories",
        nargs="+",
        default=DEFAULT_SPEC["only_categories"],
        metavar="CATEGORY",
        help="build the corpus from these categories only",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if an identical corpus is there"
    )


def run(args: argparse.Namespace) -> Path:
    spec = dict(
        seed=args.seed,
        image_size=args.image_size,
        unseen_fraction=args.unseen_fraction,
        train_renderings=args.train_renderings,
        eval_fractions=args.eval_fractions,
        include_skin_tones=args.include_skin_tones,
        max_emoji=args.max_emoji,
        font_path=args.font_path,
        heldout_categories=args.heldout_categories,
        only_categories=args.only_categories,
    )
    build = build_caption_corpus if args.force else ensure_caption_corpus
    return build(args.out, **spec)
