"""CTC decoding: greedy and flashlight beam search (lexicon-free and with a lexicon)."""

import torch

from mmembed.models.decoding import CTCBeamDecoder, ctc_greedy
from mmembed.text import train_tokenizer


def emissions(tokenizer, frames):
    """Log-probs where each frame puts most mass on the given character (None = blank)."""
    log_probs = torch.full((1, len(frames), tokenizer.vocab_size), -8.0)
    for t, spec in enumerate(frames):
        if spec is None:
            log_probs[0, t, tokenizer.blank_id] = 0.0
        else:
            for char, weight in spec.items():
                log_probs[0, t, tokenizer.token_to_id(char)] = weight
    return log_probs.log_softmax(-1)


def spell(text):
    frames = []
    for char in text:
        frames += [{char: 0.0}, None]
    return frames


def test_beam_search_reads_a_clear_utterance():
    tokenizer = train_tokenizer(["the cat sat on the hat"], "char")
    log_probs = emissions(tokenizer, spell("the cat"))
    lengths = torch.tensor([log_probs.shape[1]])
    assert tokenizer.decode(ctc_greedy(log_probs, lengths, tokenizer.blank_id)[0]) == "the cat"
    decoder = CTCBeamDecoder(tokenizer, beam_size=8)
    assert tokenizer.decode(decoder(log_probs, lengths)[0]) == "the cat"


def test_a_lexicon_constrains_beam_search_to_known_words(tmp_path):
    tokenizer = train_tokenizer(["the cat sat on the hat"], "char")
    # the acoustics slightly prefer "cst", which is not a word
    frames = spell("the c") + [{"s": -0.1, "a": -0.6}, None] + spell("t")
    log_probs = emissions(tokenizer, frames)
    lengths = torch.tensor([log_probs.shape[1]])
    assert tokenizer.decode(ctc_greedy(log_probs, lengths, tokenizer.blank_id)[0]) == "the cst"
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("".join(f"{w} {' '.join(w)}\n" for w in ("the", "cat", "sat", "hat", "on")))
    decoder = CTCBeamDecoder(tokenizer, beam_size=16, lexicon=str(lexicon))
    assert tokenizer.decode(decoder(log_probs, lengths)[0]) == "the cat"
