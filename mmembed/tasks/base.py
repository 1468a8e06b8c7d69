"""What every task over the shared token table does, in one place: it owns the tokenizer and
the :class:`~mmembed.SharedEmbedding` sized by its vocabulary, builds the optimizer and schedule
from config partials, saves its plain hyper-parameters and keeps the tokenizer in checkpoints.
Tasks subclass it (a LightningModule) and add their model parts and steps."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any, Required, TypedDict

import lightning as L
import torch

from mmembed.data.skips import PATHS
from mmembed.embedding import SharedEmbedding
from mmembed.tasks.optim import configure_optimizers, extend_schedules_to_run_length
from mmembed.text.tokenizers import Tokenizer

log = logging.getLogger(__name__)

# Constructor arguments that are objects, not settings: left out of ``hparams`` (and so out of
# checkpoints, which must load with ``weights_only=True``).
_OBJECT_ARGUMENTS = ("tokenizer", "encoder", "embedding", "decoder", "optimizer", "scheduler")


class TokenTableArgs(TypedDict, total=False):
    """The constructor arguments every task takes (keywords; see :class:`TokenTableTask`)."""

    tokenizer: Required[Tokenizer]
    embedding: Required[Callable[..., SharedEmbedding]]
    width: Required[int]
    optimizer: Callable[..., torch.optim.Optimizer] | None
    scheduler: Callable[..., Any] | None
    scheduler_interval: str


def default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


class TokenTableTask(L.LightningModule):
    """Base of the mmembed tasks.

    Args:
        tokenizer: text tokenizer; its vocabulary sizes the shared table, and it is saved in
            every checkpoint (ids only mean something with their tokenizer).
        embedding: ``SharedEmbedding`` factory, called with ``num_embeddings`` (the vocabulary
            size) and ``out_features=width``.
        width: the shared model width (encoder output = embedding projection = decoder width).
        optimizer: partial taking the trainable parameters (``conf/optimizer/``); default AdamW
            at lr 1e-3.
        scheduler: partial taking the optimizer (and ``total_steps`` when it has that argument:
            the trainer's estimate is passed); ``None`` = constant learning rate
            (``conf/scheduler/``).
        scheduler_interval: ``"step"`` or ``"epoch"``.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        embedding: Callable[..., SharedEmbedding],
        width: int,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "step",
    ):
        super().__init__()
        # Collects the subclass's constructor arguments too (Lightning walks the init frames).
        self.save_hyperparameters(ignore=list(_OBJECT_ARGUMENTS), logger=False)
        for name, value in self.hparams.items():
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                self.hparams[name] = dataclasses.asdict(value)
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(
                f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}"
            )
        self.tokenizer = tokenizer
        self.width = width
        self.embedding = embedding(num_embeddings=tokenizer.vocab_size, out_features=width)
        self.optimizer_factory = optimizer or default_optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        # submodule name -> learning-rate multiplier (set by mmembed.callbacks.FreezeSchedule)
        self.lr_factors: dict[str, float] = {}

    def configure_optimizers(self):
        return configure_optimizers(
            self,
            self.optimizer_factory,
            self.scheduler_factory,
            self.trainer.estimated_stepping_batches,
            self.scheduler_interval,
            lr_factors=self.lr_factors,
        )

    def on_train_start(self) -> None:
        extend_schedules_to_run_length(self.trainer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokenizer"] = self.tokenizer.to_dict()

    def test_split_names(self) -> list[str]:
        """The name of every test loader, in order: the data module's ``test_split_names``
        (e.g. ``["test", "test_unseen"]``), ``test_<i>`` for any beyond them. Metrics of each
        are logged under its name (``test_unseen/cer``)."""
        count = len(self.trainer.num_test_batches)
        names = list(getattr(self.trainer.datamodule, "test_split_names", None) or ["test"])
        names += [f"test_{index}" for index in range(len(names), count)]
        return names[:count]

    def nothing_to_learn(self) -> torch.Tensor:
        """The loss of a training batch whose items all failed to load: zero, but reaching
        every trainable parameter, so DDP ranks still meet in the gradient all-reduce
        (returning None from one rank's step would hang the others). The optimizer still
        steps, with zero gradients."""
        return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0

    def log_scored_items(self, split: str, count: int) -> None:
        """``<split>/items``: how many items the split's metrics scored, i.e. those that loaded
        (the final report shows it beside the scores)."""
        self.log(
            f"{split}/items", float(count), reduce_fx="sum", on_epoch=True,
            batch_size=count, add_dataloader_idx=False,
        )  # fmt: skip


def is_empty(batch: Any) -> bool:
    """Whether every item of ``batch`` failed to load (the data module counted them as skips;
    the batch holds no tensors)."""
    return isinstance(batch, dict) and not batch.get(PATHS, True)


def log_examples(
    split: str, epoch: int, references: Sequence[str], hypotheses: Sequence[str], count: int
) -> None:
    """Write the first ``count`` reference/hypothesis pairs to the run log."""
    for reference, hypothesis in list(zip(references, hypotheses, strict=True))[:count]:
        log.info("[%s epoch %d]\n  ref: %s\n  hyp: %s", split, epoch, reference, hypothesis)
