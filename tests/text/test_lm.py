"""Lexicons and n-gram LMs built from text, and the decodes they change."""

import json
import math

import pytest
import torch

from mmembed.models.decoding import CTCBeamDecoder, SpeechDecoding, ctc_greedy
from mmembed.models.decoding.tuning import grid_search
from mmembed.text import train_tokenizer
from mmembed.text.lm import build_language_model, build_lexicon, kneser_ney_arpa, main, read_texts

TEXTS = ["the cat sat on the mat", "the cat sat on the hat", "a cat sat"] * 3 + ["the cst is rare"]


def emissions(tokenizer, frames):
    """Log-probs where each frame puts most mass on the given characters (None = blank)."""
    log_probs = torch.full((1, len(frames), tokenizer.vocab_size), -8.0)
    for t, spec in enumerate(frames):
        if spec is None:
            log_probs[0, t, tokenizer.blank_id] = 0.0
        else:
            for char, weight in spec.items():
                log_probs[0, t, tokenizer.token_to_id(char)] = weight
    return log_probs.log_softmax(-1), torch.tensor([len(frames)])


def spell(text):
    return [frame for char in text for frame in ({char: 0.0}, None)]


def arpa_section(arpa: str, order: int) -> dict[tuple[str, ...], float]:
    lines = arpa.split(f"\\{order}-grams:")[1].split("\n\n")[0].strip().splitlines()
    return {tuple(line.split("\t")[1].split()): float(line.split("\t")[0]) for line in lines}


def test_kneser_ney_probabilities_sum_to_one_for_every_context():
    arpa = kneser_ney_arpa(TEXTS, order=2)
    unigrams = arpa_section(arpa, 1)
    assert sum(10**p for gram, p in unigrams.items() if gram != ("<s>",)) == pytest.approx(1.0)
    bigrams = arpa_section(arpa, 2)
    backoff = {
        tuple(line.split("\t")[1].split()): float(line.split("\t")[2])
        for line in arpa.split("\\1-grams:")[1].split("\n\n")[0].strip().splitlines()
        if line.count("\t") == 2
    }
    vocabulary = [gram[0] for gram in unigrams if gram != ("<s>",)]
    for context in ("the", "cat", "<s>"):
        total = sum(
            10 ** bigrams[(context, w)]
            if (context, w) in bigrams
            else 10 ** (backoff[(context,)] + unigrams[(w,)])
            for w in vocabulary
        )
        assert total == pytest.approx(1.0, abs=1e-4), context
    assert "ngram 2=" in arpa and arpa.rstrip().endswith("\\end\\")


def test_the_lm_corrects_a_word_the_acoustics_misspell(tmp_path):
    tokenizer = train_tokenizer(TEXTS, "char")
    lexicon, lm = build_language_model(TEXTS, tokenizer, tmp_path, order=3)
    assert "cat c a t" in lexicon.read_text().splitlines()
    # the acoustics slightly prefer "cst" (a rare word the lexicon knows)
    log_probs, lengths = emissions(
        tokenizer, spell("the c") + [{"s": -0.1, "a": -0.6}, None] + spell("t sat")
    )
    assert tokenizer.decode(ctc_greedy(log_probs, lengths, 0)[0]) == "the cst sat"
    plain = CTCBeamDecoder(tokenizer, beam_size=16, lexicon=str(lexicon))
    assert tokenizer.decode(plain(log_probs, lengths)[0]) == "the cst sat"
    with_lm = CTCBeamDecoder(tokenizer, beam_size=16, lexicon=str(lexicon), lm=str(lm))
    assert tokenizer.decode(with_lm(log_probs, lengths)[0]) == "the cat sat"


def test_words_outside_the_lexicon_stay_decodable(tmp_path):
    tokenizer = train_tokenizer(TEXTS, "char")
    lexicon, _ = build_language_model(TEXTS, tokenizer, tmp_path)
    log_probs, lengths = emissions(tokenizer, spell("the tac sat"))  # "tac" is no word
    decode = decoder_for(tokenizer, lexicon, log_probs, lengths)
    assert decode(unk_score=-5.0) == "the tac sat"
    assert decode(unk_score=-math.inf) != "the tac sat"  # lexicon words only


def decoder_for(tokenizer, lexicon, log_probs, lengths):
    def decode(**options):
        decoder = CTCBeamDecoder(tokenizer, beam_size=16, lexicon=str(lexicon), **options)
        return tokenizer.decode(decoder(log_probs, lengths)[0])

    return decode


def test_grid_search_picks_the_lm_weight_that_lowers_validation_wer(tmp_path):
    tokenizer = train_tokenizer(TEXTS, "char")
    lexicon, lm = build_language_model(TEXTS, tokenizer, tmp_path)
    frames = spell("the c") + [{"s": -0.1, "a": -0.6}, None] + spell("t sat")
    options = SpeechDecoding(method="ctc_beam", beam_size=16, lexicon=str(lexicon), lm=str(lm))
    best, table = grid_search(
        tokenizer, options, [emissions(tokenizer, frames)], ["the cat sat"], [0.0, 2.0], [0.0]
    )
    assert best.lm_weight == 2.0
    assert [row["wer"] for row in table] == pytest.approx([1 / 3, 0.0])


def test_lexicon_leaves_out_words_the_tokenizer_cannot_spell():
    tokenizer = train_tokenizer(["abc"], "char")
    assert build_lexicon(["cab", "dab", "cab"], tokenizer) == ["cab c a b"]


def test_cli_reads_manifests_and_text_files(tmp_path, capsys):
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps({"text": t, "audio_filepath": "x.wav"}) + "\n"
                                for t in TEXTS))  # fmt: skip
    extra = tmp_path / "more.txt"
    extra.write_text("The Cat, again!\n\n")
    tokenizer = train_tokenizer(TEXTS, "char")
    tokenizer.save(tmp_path / "tokenizer.json")
    assert read_texts([manifest, extra])[-1] == "the cat again"
    main([str(manifest), str(extra), "--tokenizer", str(tmp_path / "tokenizer.json"),
          "--out", str(tmp_path / "lm"), "--order", "2"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "11 sentences" in printed and "task.decoding.lm=" in printed
    assert (tmp_path / "lm" / "lm.arpa").read_text().startswith("\n\\data\\")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"audio_filepath": "x.wav"}\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:1: no 'text'"):
        read_texts([broken])
