"""Image captioning: image encoder + shared token table + Transformer decoder.

The decoder's token inputs are rows of the shared :class:`~mmembed.SharedEmbedding` and its
output logits are tied to the same table, so the captioner reads and writes the vocabulary every
other modality uses. Trained with teacher forcing (label-smoothed cross-entropy); decoded with
greedy or batched beam search; scored per epoch with BLEU-1..4, ROUGE-L and CIDEr-D against all
references of each image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Unpack

import torch
import torch.nn.functional as F
from torch import nn

from mmembed.embedding import SharedEmbedding
from mmembed.metrics.captioning import CaptionMetrics, save_caption_grid
from mmembed.models.decoding import CaptionDecoding, Hypothesis
from mmembed.models.decoding.cached import cached_beam_search
from mmembed.models.decoding.options import as_options
from mmembed.models.text_decoder import TransformerTextDecoder
from mmembed.tasks.base import TokenTableArgs, TokenTableTask, is_empty, log_examples

log = logging.getLogger(__name__)


class ImageCaptioning(TokenTableTask):
    """Encoder-decoder captioner over the shared token table.

    Args:
        shared: ``tokenizer``, ``embedding``, ``width``, ``optimizer``, ``scheduler``,
            ``scheduler_interval`` (keywords): see :class:`~mmembed.tasks.base.TokenTableTask`.
        encoder: module mapping images (B, 3, H, W) to region features (B, N, width), e.g.
            :func:`mmembed.models.image.build_image_encoder`.
        decoder: ``TransformerTextDecoder`` factory called with the embedding.
        label_smoothing: of the teacher-forcing cross-entropy.
        decoding: :class:`~mmembed.models.decoding.CaptionDecoding` (or a dict of its fields).
        num_logged_examples: reference/hypothesis pairs written to the log each evaluation.
        grid_images: images in the PNG grid written each validation and test (0 = none).
        grid_dir: folder for those grids; None = ``<trainer.default_root_dir>/captions`` (the
            run folder with ``mmembed-train``).
        image_mean, image_std: the normalisation of the input images, to draw them in the grids;
            None = the data module's ``image_normalization`` (read in ``setup``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: Callable[[SharedEmbedding], TransformerTextDecoder],
        label_smoothing: float = 0.1,
        decoding: CaptionDecoding | dict[str, Any] | None = None,
        num_logged_examples: int = 3,
        grid_images: int = 16,
        grid_dir: str | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **shared: Unpack[TokenTableArgs],
    ):
        super().__init__(**shared)
        self.encoder = encoder
        self.decoder = decoder(self.embedding)
        self.label_smoothing = label_smoothing
        self.decoding = as_options(decoding, CaptionDecoding)
        self.num_logged_examples = num_logged_examples
        self.grid_images = grid_images
        self.grid_dir = grid_dir
        self.image_normalization = (
            {"mean": tuple(image_mean), "std": tuple(image_std)}
            if image_mean is not None and image_std is not None
            else None
        )
        # One accumulator per evaluated split ("val", "test", "test_unseen", ...); the texts
        # they hold are not weights, so none of this enters checkpoints.
        self.caption_metrics = nn.ModuleDict({"val": CaptionMetrics()})
        self._test_splits: list[str] = []
        # images with their captions, spread over each split, for the sample grid and log
        self._samples: dict[str, dict[str, list]] = {}

    def setup(self, stage: str) -> None:
        if self.image_normalization is None:
            datamodule = self.task_datamodule()
            self.image_normalization = getattr(datamodule, "image_normalization", None)

    # --- model -----------------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder memory (B, N, width) for images (B, 3, H, W): the export-friendly half of
        the model; :meth:`decode_step` is the other."""
        return self.encoder(images)

    def decode_step(self, input_ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Next-token log-probabilities (B, V) after prefixes ``input_ids`` (B, t) that start
        with the begin token."""
        return self.decoder(input_ids, memory)[:, -1].float().log_softmax(dim=-1)

    def teacher_forcing_loss(
        self, batch: dict[str, Any], memory: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Label-smoothed cross-entropy of a collated batch (``images``, ``input_ids``,
        ``target_ids``, ``lengths``); ``memory`` skips re-encoding the images."""
        if memory is None:
            memory = self(batch["images"])
        inputs, targets, lengths = batch["input_ids"], batch["target_ids"], batch["lengths"]
        padding = torch.arange(inputs.shape[1], device=inputs.device)[None, :] >= lengths[:, None]
        logits = self.decoder(inputs, memory, input_padding_mask=padding)
        return F.cross_entropy(
            logits.float().flatten(0, 1),
            targets.masked_fill(padding, -100).flatten(),
            ignore_index=-100,
            label_smoothing=self.label_smoothing,
        )

    # --- decoding --------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        images: torch.Tensor,
        *,
        memory: torch.Tensor | None = None,
        beam_size: int | None = None,
        length_penalty: float | None = None,
        max_length: int | None = None,
        no_repeat_ngram_size: int | None = None,
    ) -> list[Hypothesis]:
        """The best hypothesis per image (token ids, log-likelihood, score). Options default to
        the ``decoding`` config. Call ``.eval()`` first outside a Trainer."""
        if memory is None:
            memory = self(images)
        # one token per step over the key/value caches, as the exported decoder-step graph runs
        memory_cache = self.decoder.memory_cache(memory)

        def step(tokens: torch.Tensor, cache: torch.Tensor, owners: torch.Tensor):
            return self.decoder.step(tokens, cache, memory_cache, owners)

        return cached_beam_search(
            step,
            lambda rows: self.decoder.empty_cache(rows, memory),
            memory.shape[0],
            self.tokenizer.bos_id,
            self.tokenizer.eos_id,
            device=memory.device,
            **self.search_options(
                beam_size=beam_size,
                length_penalty=length_penalty,
                max_length=max_length,
                no_repeat_ngram_size=no_repeat_ngram_size,
            ),
        )

    def search_options(self, **given: Any) -> dict[str, Any]:
        """The beam-search settings :meth:`generate` uses (exported with the model): the
        ``decoding`` config with the ``given`` values that are not None on top."""
        options = {**vars(self.decoding), **{k: v for k, v in given.items() if v is not None}}
        return {
            "beam_size": options["beam_size"],
            # the begin token takes one learned position
            "max_length": min(options["max_length"], self.decoder.max_length - 1),
            "length_penalty": options["length_penalty"],
            "no_repeat_ngram_size": options["no_repeat_ngram_size"],
        }

    def caption(self, images: torch.Tensor, **options: Any) -> list[str]:
        """Captions for images (B, 3, H, W), preprocessed like the training data (the data
        module's eval transform). ``options`` override the ``decoding`` config, e.g.
        ``beam_size=1``."""
        return [self.tokenizer.decode(hyp.tokens) for hyp in self.generate(images, **options)]

    # --- Lightning hooks -------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if is_empty(batch):
            return self.nothing_to_learn()
        loss = self.teacher_forcing_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["captions"]))
        return loss

    def _evaluate(
        self,
        batch: dict[str, Any],
        split: str,
        beam: int,
        num_batches: int | float,
        memory: torch.Tensor | None = None,
    ) -> None:
        """Loss, captions and metrics of one batch; ``memory``: the images already encoded."""
        if is_empty(batch):
            return
        memory = self(batch["images"]) if memory is None else memory
        loss = self.teacher_forcing_loss(batch, memory)
        hypotheses = [
            self.tokenizer.decode(hyp.tokens)
            for hyp in self.generate(batch["images"], memory=memory, beam_size=beam)
        ]
        self.caption_metrics[split].update(batch["image_ids"], hypotheses, batch["references"])
        size = len(hypotheses)
        self.log(
            f"{split}/loss",
            loss,
            prog_bar=split == "val",
            batch_size=size,
            sync_dist=True,
            add_dataloader_idx=False,
        )
        self.log_scored_items(split, size)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self._keep_samples(split, batch, hypotheses, num_batches)

    def _keep_samples(
        self,
        split: str,
        batch: dict[str, Any],
        hypotheses: list[str],
        num_batches: int | float,
    ) -> None:
        # Spread over the whole split: the first batch of an ordered data set (the emoji corpus
        # follows Unicode order) would show only its first subgroup.
        wanted = max(self.grid_images, self.num_logged_examples)
        kept = self._samples.setdefault(split, {"images": [], "hypotheses": [], "references": []})
        room = wanted - len(kept["hypotheses"])
        if room <= 0:
            return
        per_batch = wanted if not math.isfinite(num_batches) else math.ceil(wanted / num_batches)
        picks = _evenly_spaced(len(hypotheses), min(per_batch, room))
        kept["images"].append(batch["images"][picks].detach().cpu())
        kept["hypotheses"] += [hypotheses[i] for i in picks]
        kept["references"] += [batch["references"][i] for i in picks]

    def _finish_split(self, split: str, file_stem: str) -> None:
        metric = self.caption_metrics[split]
        scores = metric.compute()  # the whole split, gathered from every rank
        metric.reset()
        for name, value in scores.items():
            self.log(
                f"{split}/{name}",
                value,
                prog_bar=name in ("bleu_4", "cider_d"),
                add_dataloader_idx=False,
                # Already equal on every rank; the (no-op) mean just tells Lightning so.
                sync_dist=True,
            )
        sample = self._samples.pop(split, None)
        if not sample or not sample["hypotheses"]:
            return
        references = [" | ".join(refs) for refs in sample["references"]]
        log_examples(
            split, self.current_epoch, references, sample["hypotheses"], self.num_logged_examples
        )
        if self.grid_images > 0:
            path = save_caption_grid(
                torch.cat(sample["images"]),
                sample["hypotheses"],
                sample["references"],
                self._grid_folder() / f"{file_stem}.png",
                max_items=self.grid_images,
                **(self.image_normalization or {}),
            )
            log.info("caption samples: %s", path)

    def _grid_folder(self) -> Path:
        return Path(self.grid_dir or Path(self.trainer.default_root_dir) / "captions")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        num_batches = self.trainer.num_val_batches[0]
        self._evaluate(batch, "val", self.decoding.validation_beam_size, num_batches)

    def on_validation_epoch_end(self) -> None:
        self._finish_split("val", f"val_epoch_{self.current_epoch:03d}")

    def on_test_epoch_start(self) -> None:
        # Every rank builds every accumulator, so each takes part in every gather.
        self._test_splits = self.test_split_names()
        for split in self._test_splits:
            self.caption_metrics[split] = CaptionMetrics().to(self.device)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        split = self._test_splits[dataloader_idx]
        num_batches = self.trainer.num_test_batches[dataloader_idx]
        self._evaluate(batch, split, self.decoding.beam_size, num_batches)

    def on_test_epoch_end(self) -> None:
        for split in self._test_splits:
            self._finish_split(split, split)


def _evenly_spaced(size: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(size)``, first and last included."""
    count = min(count, size)
    if count <= 1:
        return list(range(count))
    return [round(i * (size - 1) / (count - 1)) for i in range(count)]
