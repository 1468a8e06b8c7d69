"""Before testing a speech recogniser that decodes with ``ctc_beam``, search the LM weight and
word score on the validation split and test with the best (written to ``decoding.json`` in the
run folder)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch

from mmembed.models.decoding.tuning import grid_search

log = logging.getLogger(__name__)


class TuneCTCDecoding(L.Callback):
    """Grid-search ``lm_weight`` x ``word_score`` on validation before ``trainer.test``.

    Does nothing unless the task decodes with ``ctc_beam`` and an ``lm``. The search runs on
    every rank (each gets the same result, so no communication); rank 0 writes
    ``decoding.json`` with the chosen values and the whole grid.
    """

    def __init__(
        self,
        lm_weights: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 3.0),
        word_scores: Sequence[float] = (-1.0, 0.0, 1.0),
    ):
        self.lm_weights = list(lm_weights)
        self.word_scores = list(word_scores)

    @torch.no_grad()
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        options = pl_module.decoding
        if options.method != "ctc_beam" or not options.lm:
            return
        emissions, references = [], []
        for batch in trainer.datamodule.val_dataloader():
            waveforms = batch["waveforms"].to(pl_module.device)
            lengths = batch["waveform_lengths"].to(pl_module.device)
            _, frame_lengths, log_probs = pl_module.encode(waveforms, lengths)
            emissions.append((log_probs.cpu(), frame_lengths.cpu()))
            references += batch["texts"]
        best, table = grid_search(
            pl_module.tokenizer, options, emissions, references, self.lm_weights, self.word_scores
        )
        pl_module.decoding = best
        pl_module._speech_decoder = None  # rebuilt with the new settings
        chosen = {"lm_weight": best.lm_weight, "word_score": best.word_score}
        log.info("tuned CTC beam decoding on validation: %s (grid: %s)", chosen, table)
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / "decoding.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            record = {"chosen": chosen, "decoding": dataclasses.asdict(best), "grid": table}
            path.write_text(json.dumps(record, indent=2) + "\n")
