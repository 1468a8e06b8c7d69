"""The emoji a colour font can draw, each with real English captions from Unicode and CLDR.

Sources, all offline:

* the font itself (Debian ``fonts-noto-color-emoji``), which decides what can be drawn;
* ``emoji-test.txt`` (Debian ``unicode-data``): every fully-qualified emoji sequence with its
  CLDR short name, group and subgroup. Without it only single code points in the font's
  character map are used (no flags, keycaps or ZWJ sequences) and splits are not stratified;
* CLDR English annotations (Debian ``unicode-cldr-core``): short names and keywords, used for
  extra references. Without them each emoji has fewer references.

The main reference of a single code point is its Unicode character name, lowercased
(``thumbs up sign``); a sequence has no such name, so its CLDR short name is turned into a
phrase (``flag: Germany`` -> ``flag of germany``, ``woman: red hair`` -> ``woman with red hair``).
"""

from __future__ import annotations

import os
import re
import unicodedata
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = [
    "CLDR_ANNOTATION_FILES",
    "EMOJI_TEST_FILE",
    "Emoji",
    "emoji_catalog",
    "find_emoji_font",
]

FONT_FILE_NAME = "NotoColorEmoji.ttf"
FONT_SEARCH_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
EMOJI_TEST_FILE = Path("/usr/share/unicode/emoji/emoji-test.txt")
CLDR_ANNOTATION_FILES = (
    Path("/usr/share/unicode/cldr/common/annotations/en.xml"),
    # Sequences (flags, skin tones, ZWJ families) have their names here, not in annotations/.
    Path("/usr/share/unicode/cldr/common/annotationsDerived/en.xml"),
)
# The size Noto Color Emoji's bitmaps are drawn at; FreeType refuses other sizes.
NOTO_BITMAP_SIZE = 109

ZWJ = "\u200d"
VARIATION_SELECTOR_16 = "\ufe0f"
SKIN_TONES = frozenset(chr(cp) for cp in range(0x1F3FB, 0x1F400))
REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)
MAX_KEYWORDS = 3

# How the head of a CLDR name joins its details: "flag: Germany" -> "flag of germany".
_CLDR_JOINERS = {"flag": "of", "family": "of", "kiss": "between", "couple with heart": "between"}
_EMOJI_TEST_LINE = re.compile(
    r"^(?P<codepoints>[0-9A-F ]+?)\s*;\s*(?P<status>[a-z-]+)\s*#\s*\S+\s+E\d+\.\d+\s+(?P<name>.+)$"
)


@dataclass(frozen=True)
class Emoji:
    """One drawable emoji and its captions (main reference first)."""

    text: str
    references: tuple[str, ...]
    # "group/subgroup" from emoji-test.txt (empty without it): splits are stratified by it.
    category: str
    # The text without skin-tone modifiers: all tones of one emoji go to the same split, so a
    # test image is never a recoloured training image.
    family: str

    @property
    def name(self) -> str:
        return self.references[0]


def find_emoji_font(font_path: str | os.PathLike | None = None) -> Path:
    """``font_path`` if given, else Noto Color Emoji from the system font folders."""
    if font_path is not None:
        path = Path(font_path)
        if not path.is_file():
            raise FileNotFoundError(f"emoji font {path} does not exist")
        return path
    for folder in FONT_SEARCH_DIRS:
        found = sorted(folder.rglob(FONT_FILE_NAME)) if folder.is_dir() else []
        if found:
            return found[0]
    raise FileNotFoundError(
        f"{FONT_FILE_NAME} not found under {[str(d) for d in FONT_SEARCH_DIRS]}: install it "
        "with `apt-get install fonts-noto-color-emoji` or pass font_path"
    )


def emoji_catalog(
    font_path: str | os.PathLike,
    *,
    include_skin_tones: bool = False,
    emoji_test_file: str | os.PathLike | None = EMOJI_TEST_FILE,
    annotation_files: Iterable[str | os.PathLike] = CLDR_ANNOTATION_FILES,
) -> list[Emoji]:
    """Every emoji the font draws as one glyph, with its references, in Unicode order.

    Missing optional sources (``emoji_test_file``, ``annotation_files``) are skipped; see the
    module docstring for what that costs.
    """
    from PIL import ImageFont

    font = ImageFont.truetype(str(font_path), NOTO_BITMAP_SIZE)
    annotations = _cldr_annotations(tuple(Path(p) for p in annotation_files))
    if emoji_test_file is not None and Path(emoji_test_file).is_file():
        entries = _emoji_test_entries(Path(emoji_test_file))
    else:
        entries = _font_single_code_points(Path(font_path))
    # A sequence the font has no ligature for is drawn as several glyphs side by side.
    one_glyph_width = 1.1 * font.getlength("\U0001f600")
    catalog = []
    for text, cldr_name, category in entries:
        if not include_skin_tones and SKIN_TONES.intersection(text):
            continue
        if font.getlength(text) > one_glyph_width:
            continue
        references = _references(text, cldr_name, annotations)
        if references:
            family = "".join(ch for ch in text if ch not in SKIN_TONES)
            catalog.append(Emoji(text, references, category, family))
    return catalog


def _emoji_test_entries(path: Path) -> list[tuple[str, str | None, str]]:
    entries = []
    group = subgroup = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif (match := _EMOJI_TEST_LINE.match(line)) and match["status"] == "fully-qualified":
            text = "".join(chr(int(cp, 16)) for cp in match["codepoints"].split())
            entries.append((text, match["name"].strip(), f"{group}/{subgroup}"))
    if not entries:
        raise ValueError(f"{path} lists no fully-qualified emoji; is it emoji-test.txt?")
    return entries


def _font_single_code_points(font_path: Path) -> list[tuple[str, str | None, str]]:
    # fontTools comes with matplotlib. Only symbols ("So") are emoji: the font also maps
    # digits, '#', ZWJ, tags and skin-tone swatches, which are only parts of sequences.
    from fontTools.ttLib import TTFont

    code_points = sorted(TTFont(str(font_path), lazy=True).getBestCmap())
    return [
        (chr(cp), None, "")
        for cp in code_points
        if unicodedata.category(chr(cp)) == "So" and cp not in REGIONAL_INDICATORS
    ]


@cache
def _cldr_annotations(paths: tuple[Path, ...]) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """text (without VS16) -> (short name, keywords) from the CLDR files that exist."""
    names: dict[str, str] = {}
    keywords: dict[str, tuple[str, ...]] = {}
    for path in paths:
        if not path.is_file():
            continue
        for node in ElementTree.parse(path).iter("annotation"):
            key = node.get("cp", "").replace(VARIATION_SELECTOR_16, "")
            value = (node.text or "").strip()
            if not key or not value or value == "↑↑↑":  # "↑↑↑" means "inherit": no data
                continue
            if node.get("type") == "tts":
                names.setdefault(key, value)
            else:
                keywords.setdefault(key, tuple(k.strip() for k in value.split("|") if k.strip()))
    return {key: (names.get(key), keywords.get(key, ())) for key in names.keys() | keywords}


def _references(
    text: str,
    cldr_name: str | None,
    annotations: dict[str, tuple[str | None, tuple[str, ...]]],
) -> tuple[str, ...]:
    annotated_name, keywords = annotations.get(text.replace(VARIATION_SELECTOR_16, ""), (None, ()))
    cldr_name = cldr_name or annotated_name
    cldr_phrase = _cldr_phrase(text, cldr_name) if cldr_name else None
    main = _unicode_name(text) or cldr_phrase
    if main is None:
        return ()
    described = cldr_phrase or main
    references = [main, described, f"an emoji of {described}"]
    # A keyword that only repeats words of the name adds nothing; one without Latin letters
    # ("3:00", or the CJK character on a Japanese button) is not English text to learn.
    named_words = set(f"{main} {described}".split())
    extra = [
        keyword
        for keyword in map(_clean, keywords)
        if re.search("[a-z]", keyword) and not set(keyword.split()) <= named_words
    ]
    if extra:
        references.append(f"an emoji about {_join_and(extra[:MAX_KEYWORDS])}")
    return tuple(dict.fromkeys(references))


def _unicode_name(text: str) -> str | None:
    """The character name of a single code point (ignoring VS16), lowercased."""
    bare = text.replace(VARIATION_SELECTOR_16, "")
    if len(bare) != 1:
        return None
    name = unicodedata.name(bare, "")
    return name.lower() or None


def _cldr_phrase(text: str, cldr_name: str) -> str:
    """A CLDR short name as a phrase: "flag: Germany" -> "flag of germany"."""
    name = _clean(cldr_name)
    if ":" not in name:
        return name
    head, details = (part.strip() for part in name.split(":", 1))
    if head == "keycap":
        # "keycap: #" -> "keycap number sign": the symbol itself would vanish when captions
        # are normalised to letters and digits. ("keycap: 10" is one code point, "keycap ten".)
        return _unicode_name(text) or f"keycap {unicodedata.name(text[0], details).lower()}"
    parts = [part.strip() for part in details.split(",") if part.strip()]
    return f"{head} {_CLDR_JOINERS.get(head, 'with')} {_join_and(parts)}"


_TYPOGRAPHIC_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def _clean(text: str) -> str:
    return " ".join(text.translate(_TYPOGRAPHIC_QUOTES).lower().split())


def _join_and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
