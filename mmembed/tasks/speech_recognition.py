"""Speech recognition: audio encoder + shared token table, CTC or joint CTC/attention.

The CTC head has no weights of its own: frames are scored against the shared table
(``embedding.logits``), ESPnet-style tied output. The joint variant adds a Transformer decoder
whose token inputs and output logits are the same table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.text import CharErrorRate, WordErrorRate

from mmembed.embedding import SharedEmbedding
from mmembed.models.beam_search import beam_search
from mmembed.models.text_decoder import TransformerTextDecoder
from mmembed.tasks.optim import configure_optimizers, extend_schedules_to_run_length
from mmembed.text.tokenizers import Tokenizer

log = logging.getLogger(__name__)

DECODING_METHODS = ("greedy", "ctc_beam", "attention")


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks."""
    best = log_probs.argmax(dim=-1)
    hypotheses = []
    for path, length in zip(best, lengths.tolist(), strict=True):
        merged = torch.unique_consecutive(path[:length])
        hypotheses.append(merged[merged != blank_id].tolist())
    return hypotheses


class CTCBeamDecoder:
    """torchaudio's flashlight ``ctc_decoder``: beam search with optional lexicon and KenLM."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        beam_size: int = 16,
        lexicon: str | None = None,
        lm: str | None = None,
        lm_weight: float = 2.0,
        word_score: float = 0.0,
    ):
        from torchaudio.models.decoder import ctc_decoder

        tokens = [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
        # flashlight needs a word-boundary token: the space of a char vocabulary; subword
        # vocabularies mark boundaries inside tokens, so lexicon-free decoding just needs a stub.
        silence = " " if " " in tokens else tokens[tokenizer.unk_id]
        self.tokenizer = tokenizer
        self.decoder = ctc_decoder(
            lexicon=lexicon,
            tokens=tokens,
            lm=lm,
            beam_size=beam_size,
            lm_weight=lm_weight,
            word_score=word_score,
            blank_token=tokens[tokenizer.blank_id],
            sil_token=silence,
            unk_word=tokens[tokenizer.unk_id],
        )

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        results = self.decoder(log_probs.float().cpu().contiguous(), lengths.int().cpu())
        return [hyps[0].tokens.tolist() if hyps else [] for hyps in results]


class SpeechRecognition(L.LightningModule):
    """CTC (``ctc_weight=1``) or joint CTC/attention speech recogniser.

    Args:
        tokenizer: text tokenizer (its vocabulary sizes the shared table); saved in checkpoints.
        encoder: module mapping ``(waveforms, lengths)`` to ``(frames (B, T, width), lengths)``.
        embedding: ``SharedEmbedding`` factory called with ``num_embeddings`` (vocabulary size)
            and ``out_features=width``.
        width: the shared model width (encoder output = embedding projection = decoder width).
        decoder: ``TransformerTextDecoder`` factory called with the embedding; required when
            ``ctc_weight < 1`` or decoding with ``"attention"``.
        logit_scale: multiplies the tied CTC logits; ``None`` = ``width ** -0.5``. A row of the
            projected table and a layer-normed frame both have about unit scale per dimension, so
            their raw dot products start around ``sqrt(width)``: saturated softmaxes that stall
            CTC's first epochs.
        ctc_weight: loss = ctc_weight * CTC + (1 - ctc_weight) * attention cross-entropy.
        label_smoothing: of the attention cross-entropy.
        decoding: ``method`` (greedy | ctc_beam | attention) and its options (``beam_size``,
            ``lexicon``, ``lm``, ``lm_weight``, ``word_score``, ``length_penalty``,
            ``max_length``).
        optimizer, scheduler: Hydra partials; see :func:`mmembed.tasks.optim.configure_optimizers`.
        num_logged_examples: reference/hypothesis pairs written to the log each validation.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        encoder: nn.Module,
        embedding: Callable[..., SharedEmbedding],
        width: int,
        decoder: Callable[[SharedEmbedding], TransformerTextDecoder] | None = None,
        logit_scale: float | None = None,
        ctc_weight: float = 1.0,
        label_smoothing: float = 0.1,
        decoding: dict[str, Any] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "step",
        num_logged_examples: int = 3,
    ):
        super().__init__()
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.embedding = embedding(num_embeddings=tokenizer.vocab_size, out_features=width)
        self.decoder = decoder(self.embedding) if decoder is not None else None
        if ctc_weight < 1.0 and self.decoder is None:
            raise ValueError("ctc_weight < 1 needs a decoder (the attention branch)")
        self.logit_scale = width**-0.5 if logit_scale is None else logit_scale
        self.ctc_weight = ctc_weight
        self.label_smoothing = label_smoothing
        self.decoding = {"method": "greedy", **(decoding or {})}
        if self.decoding["method"] not in DECODING_METHODS:
            raise ValueError(
                f"decoding.method {self.decoding['method']!r} is not one of {DECODING_METHODS}"
            )
        if self.decoding["method"] == "attention" and self.decoder is None:
            raise ValueError("decoding.method='attention' needs a decoder")
        self._ctc_beam: CTCBeamDecoder | None = None
        self.optimizer_factory = optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-3))
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.num_logged_examples = num_logged_examples
        self.metrics = nn.ModuleDict(
            {
                f"{split}_{name}": metric()
                for split in ("val", "test")
                for name, metric in (("wer", WordErrorRate), ("cer", CharErrorRate))
            }
        )

    # --- model -----------------------------------------------------------------------------

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC log-probabilities (B, T, V) over the shared vocabulary, and frame lengths."""
        _, frame_lengths, log_probs = self._encode(waveforms, lengths)
        return log_probs, frame_lengths

    def _ctc_log_probs(self, frames: torch.Tensor) -> torch.Tensor:
        return (self.embedding.logits(frames).float() * self.logit_scale).log_softmax(dim=-1)

    def _encode(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        """Frames, frame lengths and CTC log-probabilities: one encoder pass that the losses
        and the decoders share."""
        frames, frame_lengths = self.encoder(waveforms, lengths)
        return frames, frame_lengths, self._ctc_log_probs(frames)

    def _losses(
        self, batch: dict[str, Any], frames, frame_lengths, log_probs
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ctc = F.ctc_loss(
            log_probs.transpose(0, 1),
            batch["tokens"],
            frame_lengths,
            batch["token_lengths"],
            blank=self.tokenizer.blank_id,
            zero_infinity=True,
        )
        parts = {"ctc": ctc}
        loss = ctc
        if self.ctc_weight < 1.0:
            attention = self._attention_loss(frames, frame_lengths, batch)
            parts["attention"] = attention
            loss = self.ctc_weight * ctc + (1.0 - self.ctc_weight) * attention
        return loss, parts

    def _attention_loss(self, frames, frame_lengths, batch) -> torch.Tensor:
        tokens, token_lengths = batch["tokens"], batch["token_lengths"]
        batch_size = tokens.shape[0]
        bos = tokens.new_full((batch_size, 1), self.tokenizer.bos_id)
        inputs = torch.cat([bos, tokens], dim=1)
        targets = torch.cat([tokens, tokens.new_zeros(batch_size, 1)], dim=1)
        positions = torch.arange(targets.shape[1], device=tokens.device)
        targets[positions[None] == token_lengths[:, None]] = self.tokenizer.eos_id
        targets[positions[None] > token_lengths[:, None]] = -100
        logits = self.decoder(
            inputs,
            frames,
            memory_padding_mask=_padding_mask(frame_lengths, frames.shape[1]),
            input_padding_mask=_padding_mask(token_lengths + 1, inputs.shape[1]),
        )
        return F.cross_entropy(
            logits.float().flatten(0, 1),
            targets.flatten(),
            ignore_index=-100,
            label_smoothing=self.label_smoothing,
        )

    # --- decoding --------------------------------------------------------------------------

    def transcribe(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return self._decode(*self._encode(waveforms, lengths))

    def _decode(self, frames, frame_lengths, log_probs) -> list[str]:
        method = self.decoding["method"]
        if method == "greedy":
            token_lists = ctc_greedy(log_probs, frame_lengths, self.tokenizer.blank_id)
        elif method == "ctc_beam":
            token_lists = self._ctc_beam_decoder()(log_probs, frame_lengths)
        else:
            token_lists = self._attention_decode(frames, frame_lengths)
        return [self.tokenizer.decode(tokens) for tokens in token_lists]

    def _ctc_beam_decoder(self) -> CTCBeamDecoder:
        if self._ctc_beam is None:
            options = {
                key: self.decoding[key]
                for key in ("beam_size", "lexicon", "lm", "lm_weight", "word_score")
                if key in self.decoding
            }
            self._ctc_beam = CTCBeamDecoder(self.tokenizer, **options)
        return self._ctc_beam

    def _attention_decode(self, frames, frame_lengths) -> list[list[int]]:
        memory_mask = _padding_mask(frame_lengths, frames.shape[1])

        def step(prefixes: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
            logits = self.decoder(prefixes, frames[owners], memory_padding_mask=memory_mask[owners])
            return logits[:, -1].float().log_softmax(dim=-1)

        hypotheses = beam_search(
            step,
            frames.shape[0],
            self.tokenizer.bos_id,
            self.tokenizer.eos_id,
            beam_size=self.decoding.get("beam_size", 4),
            max_length=min(self.decoding.get("max_length", 100), self.decoder.max_length),
            length_penalty=self.decoding.get("length_penalty", 1.0),
            device=frames.device,
        )
        return [hyp.tokens for hyp in hypotheses]

    # --- Lightning hooks -------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        encoded = self._encode(batch["waveforms"], batch["waveform_lengths"])
        loss, parts = self._losses(batch, *encoded)
        size = len(batch["texts"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name in ("ctc", "attention"):
            if name in parts:
                self.log(f"train/{name}_loss", parts[name], batch_size=size)
        return loss

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, split: str) -> None:
        encoded = self._encode(batch["waveforms"], batch["waveform_lengths"])
        loss, _ = self._losses(batch, *encoded)
        hypotheses = self._decode(*encoded)
        references = batch["texts"]
        self.metrics[f"{split}_wer"].update(hypotheses, references)
        self.metrics[f"{split}_cer"].update(hypotheses, references)
        size = len(references)
        self.log(f"{split}/loss", loss, prog_bar=split == "val", batch_size=size, sync_dist=True)
        self.log(f"{split}/wer", self.metrics[f"{split}_wer"], batch_size=size)
        self.log(f"{split}/cer", self.metrics[f"{split}_cer"], prog_bar=True, batch_size=size)
        if batch_idx == 0 and self.num_logged_examples and self.trainer.is_global_zero:
            _log_examples(
                split, self.current_epoch, references, hypotheses, self.num_logged_examples
            )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def configure_optimizers(self):
        return configure_optimizers(
            self,
            self.optimizer_factory,
            self.scheduler_factory,
            self.trainer.estimated_stepping_batches,
            self.scheduler_interval,
        )

    def on_train_start(self) -> None:
        extend_schedules_to_run_length(self.trainer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Ids only mean something with their tokenizer: keep them together.
        checkpoint["tokenizer"] = self.tokenizer.to_dict()


def _padding_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] >= lengths[:, None]


def _log_examples(
    split: str, epoch: int, references: Sequence[str], hypotheses: Sequence[str], count: int
) -> None:
    for reference, hypothesis in list(zip(references, hypotheses, strict=True))[:count]:
        log.info("[%s epoch %d]\n  ref: %s\n  hyp: %s", split, epoch, reference, hypothesis)
