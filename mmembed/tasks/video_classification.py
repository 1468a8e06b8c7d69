"""Video classification whose labels are text: clips are scored against embedded class names.

The class names are tokenised and embedded through the shared token table (mean over their
tokens, then a small projection); the logits are scaled cosine similarities between the clip
embedding and every label embedding, with a learnable temperature (CLIP-style). Nothing in the
head depends on the number of classes, so :meth:`VideoClassification.score_labels` scores any
new list of class names without retraining. ``head="linear"`` swaps in a plain linear
classifier (a baseline; no zero-shot).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Unpack

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from mmembed.metrics.classification import save_confusion_matrix, video_level_scores
from mmembed.models.heads import ScaledCosineLogits
from mmembed.models.text_encoder import LabelTextEncoder
from mmembed.tasks.base import TokenTableArgs, TokenTableTask, is_empty

log = logging.getLogger(__name__)

HEADS = ("text", "linear")


class VideoClassification(TokenTableTask):
    """Video encoder + text-label head (or a linear head), clip- and video-level metrics.

    Args:
        shared: ``tokenizer`` (it tokenises the class names), ``embedding``, ``width``,
            ``optimizer``, ``scheduler``, ``scheduler_interval`` (keywords): see
            :class:`~mmembed.tasks.base.TokenTableTask`.
        encoder: module mapping clips (B, 3, T, H, W) to embeddings (B, width).
        head: ``"text"``: scaled cosine similarity to the embedded class names (zero-shot
            capable); ``"linear"``: a linear layer over the classes.
        class_names: the classes in label order; None = the data module's ``class_names``,
            read in ``setup``. Saved in checkpoints.
        text_projection: a linear layer on the pooled label embedding (``head="text"``).
        learn_temperature: learn the logit scale (CLIP's: starts at ``1 / 0.07``, capped at 100).
        label_smoothing: of the cross-entropy.
        class_weights: ``"balanced"``: weight the training loss of each class by the inverse
            of its share of the training videos (the data module's ``class_counts``), so an
            unbalanced set does not push every doubt into the majority class; None: unweighted.
        confusion_matrix_dir: where the video-level confusion-matrix PNGs go
            (``val_epoch_NNN.png`` every validation, ``test.png``); None = ``<run
            folder>/confusion_matrices`` (the trainer's ``default_root_dir``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: str = "text",
        class_names: Sequence[str] | None = None,
        text_projection: bool = True,
        learn_temperature: bool = True,
        label_smoothing: float = 0.0,
        class_weights: str | None = None,
        confusion_matrix_dir: str | None = None,
        **shared: Unpack[TokenTableArgs],
    ):
        super().__init__(**shared)
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.encoder = encoder
        self.head = head
        self.label_encoder = LabelTextEncoder(self.tokenizer, self.embedding, text_projection)
        self.cosine_head = ScaledCosineLogits(learnable=learn_temperature)
        self.linear_head: nn.Linear | None = None
        self.label_smoothing = label_smoothing
        if class_weights not in (None, "balanced"):
            raise ValueError(f"class_weights must be 'balanced' or None, got {class_weights!r}")
        self.class_weights = class_weights
        self.register_buffer("loss_weights", None, persistent=False)
        self.confusion_matrix_dir = confusion_matrix_dir
        self.class_names: list[str] = []
        self.metrics = nn.ModuleDict()
        self._test_splits = ["test"]
        if class_names is not None:
            self.set_class_names(class_names)

    # --- classes -----------------------------------------------------------------------------

    def set_class_names(self, class_names: Sequence[str]) -> None:
        """Bind the training classes: builds the linear head and the metrics for them."""
        names = list(class_names)
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"class names must be distinct and non-empty, got {names}")
        if names == self.class_names:
            return
        if self.head == "text":
            # a name the tokenizer cannot spell (all symbols, another script) has no label
            # embedding: say so when the classes are bound, not at the first validation step
            unspellable = [name for name in names if not self.tokenizer.encode(name)]
            if unspellable:
                raise ValueError(
                    f"class names with no tokens after normalisation (head='text' embeds each "
                    f"name's text): {unspellable}; rename those classes (folder names or "
                    f"class_names) or use head='linear'"
                )
        self.class_names = names
        if self.head == "linear":
            self.linear_head = nn.Linear(self.width, len(names))
        self.metrics = nn.ModuleDict()
        for split in ("val", "test"):
            self._add_split_metrics(split)

    def _add_split_metrics(self, split: str) -> None:
        if f"{split}_confusion" in self.metrics:
            return
        num_classes = len(self.class_names)
        for level in ("clip", "video"):
            for k in (1, 5):
                self.metrics[f"{split}_{level}_top{k}"] = MulticlassAccuracy(
                    num_classes, top_k=min(k, num_classes), average="micro"
                ).to(self.device)
        self.metrics[f"{split}_confusion"] = MulticlassConfusionMatrix(num_classes).to(
            self.device
        )

    def setup(self, stage: str) -> None:
        if not self.class_names:
            datamodule = getattr(self.trainer, "datamodule", None)
            names = getattr(datamodule, "class_names", None)
            if not names:
                raise ValueError(
                    "VideoClassification needs class_names: pass them, or train with a data "
                    "module that has a class_names property"
                )
            self.set_class_names(names)
        if self.class_weights == "balanced" and stage == "fit":
            counts = torch.tensor(self.trainer.datamodule.class_counts, dtype=torch.float32)
            self.loss_weights = balanced_weights(counts).to(self.device)
            rounded = [round(w, 3) for w in self.loss_weights.tolist()]
            log.info("class weights (balanced): %s", rounded)

    # --- model -------------------------------------------------------------------------------

    def label_embeddings(self, class_names: Sequence[str]) -> torch.Tensor:
        """Unit-norm embeddings (N, width) of any class names, through the shared table."""
        return self.label_encoder(class_names)

    def score_labels(self, videos: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
        """Zero-shot logits of clips against any list of class names, without retraining.

        ``videos``: clips (B, 3, T, H, W) -> (B, N), or K clips per video (B, K, 3, T, H, W) ->
        (B, K, N) (:func:`mmembed.metrics.classification.video_level_scores` averages those).
        Column j scores ``class_names[j]``. Needs ``head="text"``.
        """
        if self.head != "text":
            raise ValueError("score_labels needs head='text'; a linear head only knows its classes")
        leading = videos.shape[:-4]
        embeddings = self.encoder(videos.flatten(0, videos.dim() - 5))
        logits = self.cosine_head(embeddings, self.label_embeddings(class_names))
        return logits.reshape(*leading, -1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) over the training classes for clips (B, 3, T, H, W)."""
        embeddings = self.encoder(clips)
        if self.head == "linear":
            return self.linear_head(embeddings)
        return self.cosine_head(embeddings, self.label_embeddings(self.class_names))

    # --- Lightning hooks ---------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if is_empty(batch):
            return self.nothing_to_learn()
        clips, labels = batch["clips"], batch["labels"]
        logits = self(clips)
        loss = F.cross_entropy(
            logits.float(), labels, weight=self.loss_weights, label_smoothing=self.label_smoothing
        )
        size = labels.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/top1", (logits.argmax(-1) == labels).float().mean(), batch_size=size)
        if self.head == "text":
            self.log("train/logit_scale", self.cosine_head.scale, batch_size=size)
        return loss

    def _evaluate(self, batch: dict[str, Any], split: str) -> None:
        if is_empty(batch):
            return
        clips, labels = batch["clips"], batch["labels"]  # clips (B, K, 3, T, H, W)
        batch_size, num_clips = clips.shape[:2]
        clip_logits = self(clips.flatten(0, 1)).float()
        clip_labels = labels.repeat_interleave(num_clips)
        loss = F.cross_entropy(clip_logits, clip_labels)
        video_scores = video_level_scores(clip_logits.view(batch_size, num_clips, -1))
        per_clip = dict(batch_size=batch_size * num_clips, add_dataloader_idx=False)
        per_video = dict(batch_size=batch_size, add_dataloader_idx=False)
        self.log(f"{split}/loss", loss, sync_dist=True, **per_clip)
        for k in (1, 5):
            clip_metric = self.metrics[f"{split}_clip_top{k}"]
            video_metric = self.metrics[f"{split}_video_top{k}"]
            clip_metric.update(clip_logits, clip_labels)
            video_metric.update(video_scores, labels)
            self.log(f"{split}/clip_top{k}", clip_metric, **per_clip)
            self.log(f"{split}/video_top{k}", video_metric, prog_bar=k == 1, **per_video)
        self.metrics[f"{split}_confusion"].update(video_scores.argmax(-1), labels)
        self.log_scored_items(split, batch_size)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_test_epoch_start(self) -> None:
        # a data module may add test sets (e.g. clips rendered in an unseen style)
        self._test_splits = self.test_split_names()
        for split in self._test_splits:
            self._add_split_metrics(split)

    def test_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._evaluate(batch, self._test_splits[dataloader_idx])

    def on_validation_epoch_end(self) -> None:
        self._save_confusion("val", f"val_epoch_{self.current_epoch:03d}")

    def on_test_epoch_end(self) -> None:
        for split in self._test_splits:
            self._save_confusion(split, split)

    def _save_confusion(self, split: str, file_stem: str) -> None:
        metric = self.metrics[f"{split}_confusion"]
        matrix = metric.compute()  # every rank: compute() gathers across ranks
        metric.reset()
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        path = save_confusion_matrix(
            matrix,
            self.class_names,
            self.confusion_matrix_folder() / f"{file_stem}.png",
            title=f"{split} epoch {self.current_epoch}" if split == "val" else split,
        )
        log.info("confusion matrix: %s", path)

    def confusion_matrix_folder(self) -> Path:
        return Path(
            self.confusion_matrix_dir or Path(self.trainer.default_root_dir) / "confusion_matrices"
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # logits only mean something with their class list
        checkpoint["class_names"] = list(self.class_names)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Runs before the state dict is loaded: a linear head must exist at the saved size.
        if checkpoint.get("class_names"):
            self.set_class_names(checkpoint["class_names"])


def balanced_weights(counts: torch.Tensor) -> torch.Tensor:
    """Per-class loss weights ``N / (K * count)`` (scikit-learn's "balanced"); a class with no
    training videos gets weight 0."""
    total, classes = counts.sum(), (counts > 0).sum()
    return torch.where(counts > 0, total / (classes * counts.clamp_min(1)), 0.0)
