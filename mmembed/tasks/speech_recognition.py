"""Speech recognition: audio encoder + shared token table, CTC or joint CTC/attention.

The CTC head has no weights of its own: frames are scored against the shared table
(``embedding.logits``), ESPnet-style tied output. The joint variant adds a Transformer decoder
whose token inputs and output logits are the same table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Unpack

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.text import CharErrorRate, WordErrorRate

from mmembed.embedding import SharedEmbedding
from mmembed.models.decoding import SpeechDecoding
from mmembed.models.decoding.options import as_options
from mmembed.models.decoding.speech import SpeechDecoder
from mmembed.models.heads import TiedLogits
from mmembed.models.text_decoder import TransformerTextDecoder
from mmembed.tasks.base import TokenTableArgs, TokenTableTask, is_empty, log_examples

log = logging.getLogger(__name__)


class SpeechRecognition(TokenTableTask):
    """CTC (``ctc_weight=1``) or joint CTC/attention speech recogniser.

    Args:
        shared: ``tokenizer``, ``embedding``, ``width``, ``optimizer``, ``scheduler``,
            ``scheduler_interval`` (keywords): see :class:`~mmembed.tasks.base.TokenTableTask`.
        encoder: module mapping ``(waveforms, lengths)`` to ``(frames (B, T, width), lengths)``.
        decoder: ``TransformerTextDecoder`` factory called with the embedding; required when
            ``ctc_weight < 1`` or decoding with ``"attention"``.
        logit_scale: of the tied CTC logits (:class:`~mmembed.models.heads.TiedLogits`);
            ``None`` = ``width ** -0.5``.
        ctc_weight: loss = ctc_weight * CTC + (1 - ctc_weight) * attention cross-entropy.
        label_smoothing: of the attention cross-entropy.
        decoding: :class:`~mmembed.models.decoding.SpeechDecoding` (or a dict of its fields).
        num_logged_examples: reference/hypothesis pairs written to the log each validation.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: Callable[[SharedEmbedding], TransformerTextDecoder] | None = None,
        logit_scale: float | None = None,
        ctc_weight: float = 1.0,
        label_smoothing: float = 0.1,
        decoding: SpeechDecoding | dict[str, Any] | None = None,
        num_logged_examples: int = 3,
        **shared: Unpack[TokenTableArgs],
    ):
        super().__init__(**shared)
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
        self.encoder = encoder
        self.ctc_head = TiedLogits(self.embedding, logit_scale)
        self.decoder = decoder(self.embedding) if decoder is not None else None
        if ctc_weight < 1.0 and self.decoder is None:
            raise ValueError("ctc_weight < 1 needs a decoder (the attention branch)")
        self.ctc_weight = ctc_weight
        self.label_smoothing = label_smoothing
        self.decoding = as_options(decoding, SpeechDecoding)
        if self.decoding.method == "attention" and self.decoder is None:
            raise ValueError("decoding.method='attention' needs a decoder")
        self._speech_decoder: SpeechDecoder | None = None
        self.num_logged_examples = num_logged_examples
        self.metrics = nn.ModuleDict()
        self._add_split_metrics("val")
        self._test_splits = ["test"]

    # --- model -----------------------------------------------------------------------------

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC log-probabilities (B, T, V) over the shared vocabulary, and frame lengths."""
        _, frame_lengths, log_probs = self.encode(waveforms, lengths)
        return log_probs, frame_lengths

    def _ctc_log_probs(self, frames: torch.Tensor) -> torch.Tensor:
        return self.ctc_head(frames).float().log_softmax(dim=-1)

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor):
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
        return self._decode(*self.encode(waveforms, lengths))

    def _decode(self, frames, frame_lengths, log_probs) -> list[str]:
        if self._speech_decoder is None:
            search = self.attention_search_options() if self.decoder is not None else None
            self._speech_decoder = SpeechDecoder(self.tokenizer, self.decoding, search)
        if self.decoding.method != "attention":
            return self._speech_decoder(log_probs, frame_lengths)
        memory_mask = _padding_mask(frame_lengths, frames.shape[1])
        # one token per step over the key/value caches, as the exported decoder-step graph runs
        memory_cache = self.decoder.memory_cache(frames)

        def step(tokens: torch.Tensor, cache: torch.Tensor, owners: torch.Tensor):
            return self.decoder.step(tokens, cache, memory_cache, owners, memory_mask)

        return self._speech_decoder(
            log_probs,
            frame_lengths,
            step,
            lambda rows: self.decoder.empty_cache(rows, frames),
        )

    def attention_search_options(self) -> dict[str, Any]:
        """The beam-search settings of ``decoding.method="attention"`` (exported with the
        model)."""
        return {
            "beam_size": self.decoding.beam_size,
            "max_length": min(self.decoding.max_length, self.decoder.max_length),
            "length_penalty": self.decoding.length_penalty,
        }

    # --- Lightning hooks -------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if is_empty(batch):
            return self.nothing_to_learn()
        encoded = self.encode(batch["waveforms"], batch["waveform_lengths"])
        loss, parts = self._losses(batch, *encoded)
        size = len(batch["texts"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name in ("ctc", "attention"):
            if name in parts:
                self.log(f"train/{name}_loss", parts[name], batch_size=size)
        return loss

    def _evaluate(
        self, batch: dict[str, Any], batch_idx: int, split: str, encoded: tuple | None = None
    ) -> None:
        """Loss, transcripts and metrics of one batch; ``encoded``: its :meth:`encode` output,
        when the caller has it already."""
        if is_empty(batch):
            return
        if encoded is None:
            encoded = self.encode(batch["waveforms"], batch["waveform_lengths"])
        loss, _ = self._losses(batch, *encoded)
        hypotheses = self._decode(*encoded)
        references = batch["texts"]
        self.metrics[f"{split}_wer"].update(hypotheses, references)
        self.metrics[f"{split}_cer"].update(hypotheses, references)
        size = len(references)
        logged = dict(batch_size=size, add_dataloader_idx=False)
        self.log(f"{split}/loss", loss, prog_bar=split == "val", sync_dist=True, **logged)
        self.log(f"{split}/wer", self.metrics[f"{split}_wer"], **logged)
        self.log(f"{split}/cer", self.metrics[f"{split}_cer"], prog_bar=True, **logged)
        self.log_scored_items(split, size)
        if batch_idx == 0 and self.num_logged_examples and self.trainer.is_global_zero:
            log_examples(
                split, self.current_epoch, references, hypotheses, self.num_logged_examples
            )

    def _add_split_metrics(self, split: str) -> None:
        for name, metric in (("wer", WordErrorRate), ("cer", CharErrorRate)):
            if f"{split}_{name}" not in self.metrics:
                self.metrics[f"{split}_{name}"] = metric().to(self.device)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def on_test_epoch_start(self) -> None:
        # a data module may add test sets (a held-out voice, another synthesiser)
        self._test_splits = self.test_split_names()
        for split in self._test_splits:
            self._add_split_metrics(split)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, batch_idx, self._test_splits[dataloader_idx])


def _padding_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] >= lengths[:, None]
