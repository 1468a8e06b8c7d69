"""Word lexicons and n-gram language models from text, for the flashlight CTC beam decoder.

``mmembed-lm`` builds both from the training transcripts (NeMo manifests) or any text file:

- ``lexicon.txt``: one line per word, the word then its spelling in the tokenizer's tokens
  (flashlight's format), so the decoder only proposes words it knows;
- ``lm.arpa``: a word n-gram model with interpolated Kneser-Ney smoothing (modified counts for
  the lower orders, one discount per order), in the ARPA format KenLM (and so flashlight) reads.
  Interpolated KN has an exact backoff form: a seen n-gram stores its interpolated probability,
  a context stores the interpolation weight as its backoff.

Words outside the lexicon stay decodable: the decoder may emit the unknown word at
``unk_score`` (see :class:`~mmembed.models.decoding.SpeechDecoding`), and the text is read from
the decoded tokens, which spell it.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from mmembed.text.tokenizers import Tokenizer, load_tokenizer, normalize_text

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def read_texts(paths: Iterable[str | Path]) -> list[str]:
    """Normalised sentences from text files (one per line) and NeMo manifests (``.jsonl``:
    their ``text`` fields)."""
    sentences = []
    for path in map(Path, paths):
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                if path.suffix == ".jsonl":
                    try:
                        line = json.loads(line)["text"]
                    except (ValueError, KeyError, TypeError) as err:
                        raise ValueError(f"{path}:{number}: no 'text' in this line") from err
                text = normalize_text(line)
                if text:
                    sentences.append(text)
    return sentences


def build_lexicon(words: Iterable[str], tokenizer: Tokenizer) -> list[str]:
    """Lexicon lines ``word t o k e n s`` for every word the tokenizer can spell (a word with
    characters outside its vocabulary is left out: it could never be decoded)."""
    lines = []
    for word in sorted(set(words)):
        ids = tokenizer.encode(word)
        if ids and tokenizer.unk_id not in ids:
            lines.append(f"{word} {' '.join(tokenizer.id_to_token(i) for i in ids)}")
    return lines


def _ngrams(sentences: Sequence[str], order: int) -> list[Counter]:
    counts = [Counter() for _ in range(order + 1)]
    for sentence in sentences:
        words = [BOS, *sentence.split(), EOS]
        for n in range(1, order + 1):
            for start in range(len(words) - n + 1):
                counts[n][tuple(words[start : start + n])] += 1
    return counts


def kneser_ney_arpa(sentences: Sequence[str], order: int = 3, discount: float = 0.75) -> str:
    """An interpolated Kneser-Ney word n-gram model of ``sentences`` as ARPA text."""
    if order < 1 or not 0 < discount < 1:
        raise ValueError(f"need order >= 1 and 0 < discount < 1, got {order} and {discount}")
    if not sentences:
        raise ValueError("cannot build a language model from no text")
    raw = _ngrams(sentences, order)
    # Lower orders count distinct left contexts (how many contexts a word completes), except
    # n-grams starting with <s>, which have no left context and keep their raw counts.
    counts = [Counter() for _ in range(order + 1)]
    counts[order] = raw[order]
    for n in range(1, order):
        for gram in raw[n + 1]:
            counts[n][gram[1:]] += 1
        for gram, count in raw[n].items():
            if gram[0] == BOS:
                counts[n][gram] = count
    counts[1].pop((BOS,), None)  # <s> is never predicted
    # Per context: total count and number of distinct followers, for each order.
    totals, followers = [defaultdict(int) for _ in range(order + 1)], [
        defaultdict(int) for _ in range(order + 1)
    ]
    for n in range(1, order + 1):
        for gram, count in counts[n].items():
            totals[n][gram[:-1]] += count
            followers[n][gram[:-1]] += 1
    vocabulary = sorted({gram[0] for gram in counts[1]} | {UNK} - {BOS})

    def gamma(n: int, context: tuple) -> float:
        total = totals[n].get(context, 0)
        return discount * followers[n][context] / total if total else 1.0

    def probability(n: int, gram: tuple) -> float:
        if n == 0:
            return 1.0 / len(vocabulary)
        context = gram[:-1]
        total = totals[n].get(context, 0)
        lower = probability(n - 1, gram[1:])
        if not total:
            return lower
        return max(counts[n].get(gram, 0) - discount, 0) / total + gamma(n, context) * lower

    sections = []
    for n in range(1, order + 1):
        grams = sorted(counts[n]) if n > 1 else [(word,) for word in [BOS, *vocabulary]]
        lines = []
        for gram in grams:
            log_prob = -99.0 if gram == (BOS,) else math.log10(probability(n, gram))
            line = f"{log_prob:.6f}\t{' '.join(gram)}"
            if n < order and gram[-1] != EOS:
                backoff = gamma(n + 1, gram) if gram in totals[n + 1] else 1.0
                line += f"\t{math.log10(backoff):.6f}"
            lines.append(line)
        sections.append((n, lines))
    header = ["", "\\data\\", *(f"ngram {n}={len(lines)}" for n, lines in sections), ""]
    body = []
    for n, lines in sections:
        body += [f"\\{n}-grams:", *lines, ""]
    return "\n".join([*header, *body, "\\end\\", ""])


def build_language_model(
    texts: Sequence[str],
    tokenizer: Tokenizer,
    out_dir: str | Path,
    order: int = 3,
    discount: float = 0.75,
) -> tuple[Path, Path]:
    """Write ``lexicon.txt`` and ``lm.arpa`` for ``texts`` into ``out_dir``; returns both."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sentences = [normalize_text(text) for text in texts]
    sentences = [sentence for sentence in sentences if sentence]
    words = [word for sentence in sentences for word in sentence.split()]
    lexicon, lm = out_dir / "lexicon.txt", out_dir / "lm.arpa"
    _write(lexicon, "\n".join(build_lexicon(words, tokenizer)) + "\n")
    _write(lm, kneser_ney_arpa(sentences, order, discount))
    return lexicon, lm


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="mmembed-lm",
        description="Build a word lexicon and an n-gram language model (ARPA) for CTC beam "
        "decoding from text files or NeMo manifests.",
    )
    parser.add_argument("texts", nargs="+", help="text files (a sentence a line) or .jsonl")
    parser.add_argument("--tokenizer", required=True, help="a run's tokenizer.json")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--order", type=int, default=3, help="n-gram order")
    parser.add_argument("--discount", type=float, default=0.75, help="Kneser-Ney discount")
    args = parser.parse_args(argv)
    texts = read_texts(args.texts)
    lexicon, lm = build_language_model(
        texts, load_tokenizer(args.tokenizer), args.out, args.order, args.discount
    )
    words = sum(1 for _ in lexicon.open(encoding="utf-8"))
    print(f"{len(texts)} sentences -> {lexicon} ({words} words), {lm} (order {args.order})")
    print(f"decode with: task.decoding.method=ctc_beam task.decoding.lexicon={lexicon} "
          f"task.decoding.lm={lm}")  # fmt: skip


if __name__ == "__main__":
    main()
