"""Real English sentences from installed Debian packages, normalised for speech recognition.

The source is WordNet (`apt-get install wordnet-base`): its glosses carry ~48,000 quoted usage
examples (`"he ran to the store"`), short modern English written by lexicographers. The KJV
Bible (`bible-kjv-text`) was considered and left out: its archaic wording ("thou hast") is a
poor default for a recogniser meant to hear modern English.

Transcripts use lowercase a-z, apostrophe and single spaces. A sentence whose pronunciation a
synthesiser would have to guess (digits, symbols, abbreviations, acronyms spelled letter by
letter) is dropped rather than rewritten, so that every label says exactly what the audio says.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from pathlib import Path

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")

# Letters, spaces and the punctuation that only shapes prosody; anything else (digits, $, %,
# brackets, the backtick WordNet uses to quote words) changes what is said.
_SPEAKABLE = re.compile(r"[A-Za-z' ,.;:!?-]+")
_PROSODY_PUNCTUATION = re.compile(r"[,.;:!?-]")
# An apostrophe is kept only inside a word ("don't", "car's"); at a word edge it is a quote mark
# or a plural possessive ("students'"), neither of which is heard.
_EDGE_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")
_VOWEL = re.compile(r"[aeiouy]")
_QUOTED = re.compile(r'"([^"]*)"')


def wordnet_examples(wordnet_dir: Path = WORDNET_DIR) -> list[str]:
    """The quoted usage examples from WordNet's glosses, in file order, as written."""
    examples: list[str] = []
    for part_of_speech in WORDNET_PARTS_OF_SPEECH:
        path = Path(wordnet_dir) / f"data.{part_of_speech}"
        if not path.is_file():
            raise FileNotFoundError(
                f"WordNet data file {path} is missing: install it with "
                "`apt-get install wordnet-base`"
            )
        examples.extend(_examples_in_data_file(path))
    return examples


def _examples_in_data_file(path: Path) -> list[str]:
    examples = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            # Lines starting with spaces are the licence header; a synset's gloss follows " | ".
            if line.startswith(" ") or " | " not in line:
                continue
            gloss = line.split(" | ", 1)[1]
            examples.extend(_QUOTED.findall(gloss))
    return examples


def normalize_sentence(text: str) -> str | None:
    """The transcript of `text` (lowercase a-z, apostrophe, single spaces), or None if a
    synthesiser would have to guess how to say it."""
    text = text.strip()
    if not _SPEAKABLE.fullmatch(text):
        return None
    # A full stop before the end marks an abbreviation ("Mr.", "U.S.") or an ellipsis.
    if "." in text.rstrip(".!?"):
        return None
    if _ACRONYM.search(text):
        return None
    text = _PROSODY_PUNCTUATION.sub(" ", text.lower())
    words = _EDGE_APOSTROPHE.sub(" ", text).split()
    if not words or not all(_is_pronounceable_word(word) for word in words):
        return None
    return " ".join(words)


def _is_pronounceable_word(word: str) -> bool:
    # Words without a vowel ("mr", "tv") and lone letters other than "a" and "i" get spelled
    # out letter by letter, so their transcript would not match the audio.
    if len(word) == 1:
        return word in ("a", "i")
    return bool(_VOWEL.search(word))


@functools.lru_cache(maxsize=4)
def sentence_pool(
    *,
    min_words: int = 3,
    max_words: int = 10,
    max_chars: int = 50,
    min_word_count: int = 3,
    wordnet_dir: Path = WORDNET_DIR,
) -> tuple[str, ...]:
    """Unique normalised WordNet sentences that suit a small recogniser, sorted.

    `max_chars` keeps synthesised audio to about 4 s. `min_word_count` drops sentences with a
    word seen fewer times in all of WordNet's examples: one-off names and rare words cannot be
    learned from a few thousand utterances, so test sentences stay unseen as sentences but are
    made of words a model can have heard.
    """
    normalised = {normalize_sentence(example) for example in wordnet_examples(wordnet_dir)}
    sentences = sorted(sentence for sentence in normalised if sentence)
    word_counts = Counter(word for sentence in sentences for word in sentence.split())
    return tuple(
        sentence
        for sentence in sentences
        if min_words <= len(sentence.split()) <= max_words
        and len(sentence) <= max_chars
        and all(word_counts[word] >= min_word_count for word in sentence.split())
    )
