"""The contract between mmembed's data modules and the training app and tasks.

Every data module reads one data set in a standard format (NeMo manifests, COCO captions,
CSV/folder videos) and never generates data: embedded corpora are built by the app's
``corpus`` step (:mod:`mmembed.datagen`) before the data module is used. What the app and the
tasks rely on, implemented once here:

- splits: ``"train"``, ``"validation"``, ``"test"`` and optional extra test sets
  (:attr:`test_split_names`, in loader order); datasets are built once per split and cached;
- ``training_texts()``: the texts a tokenizer is trained on (training split only);
- ``set_tokenizer(tokenizer)``: the hook the app calls once the tokenizer exists;
- loaders: training batches shuffled by (seed, epoch) and sharded across ranks under DDP by
  the batch samplers of :mod:`mmembed.data.sampling` (the trainers set
  ``use_distributed_sampler: false``); evaluation unsharded, so every rank scores whole splits
  and per-item metrics stay exact; no loader draws from the global RNG;
- exact resume: checkpoints hold the training position (epoch, batches done), and a resumed
  run's training loader continues at the next batch;
- the skipped-items report: :attr:`skipped` lists every item each split left out.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from mmembed.data.sampling import EpochBatchSampler, SeededItems, ShuffledBatchSampler
from mmembed.data.skips import SkippedItem

STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",)}


def ignore_preemption_signals(worker_id: int) -> None:
    """Data-loader workers ignore the schedulers' preemption warnings (SIGUSR1/SIGUSR2: SLURM
    signals a task's whole process group): the training process handles them, and a worker
    killed by one would fail the step before the checkpoint is written."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class TaskDataModule(L.LightningDataModule):
    """Base of the mmembed data modules.

    Subclasses implement :meth:`build_dataset` (recording skipped items in
    ``self.skipped[split]``) and :meth:`training_texts`, and may override :meth:`collate_fn`
    and :meth:`batch_sampler`.

    Args:
        batch_size: training batch size; ``eval_batch_size`` (default: the same) for
            validation and test.
        num_workers: DataLoader worker processes (kept alive between epochs).
        pin_memory: DataLoader ``pin_memory``.
        strict: raise on the first unusable item instead of skipping it.
        seed: seeds the shuffling of training data (the same order on every rank).
    """

    def __init__(
        self,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        strict: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive number of items, got {value!r}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.strict = strict
        self.seed = seed
        self.tokenizer: Any = None
        self.datasets: dict[str, Dataset] = {}
        self.skipped: dict[str, list[SkippedItem]] = {}
        self._resume_position: dict[str, int] | None = None

    # --- what subclasses provide -----------------------------------------------------------

    def build_dataset(self, split: str) -> Dataset:
        """The dataset of ``split``; append what it leaves out to ``self.skipped[split]``."""
        raise NotImplementedError

    def training_texts(self) -> list[str]:
        """The texts to train a tokenizer on (nothing from validation or test)."""
        raise NotImplementedError

    def collate_fn(self, split: str) -> Callable | None:
        """How a list of items becomes a batch (None: torch's default collate)."""
        return None

    def batch_sampler(
        self, split: str, dataset: Dataset, shuffle: bool
    ) -> EpochBatchSampler | None:
        """The batches of ``split``: for training, fixed-size batches shuffled by (seed, epoch)
        and sharded across ranks; for evaluation None (``eval_batch_size`` items in order)."""
        if split != "train":
            return None
        return ShuffledBatchSampler(len(dataset), self.batch_size, shuffle=shuffle, seed=self.seed)

    # --- the contract ----------------------------------------------------------------------

    @property
    def test_split_names(self) -> list[str]:
        """The test sets, in the order ``test_dataloader`` returns their loaders."""
        return ["test"]

    def set_tokenizer(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        for dataset in self.datasets.values():
            if hasattr(dataset, "tokenizer"):
                dataset.tokenizer = tokenizer

    def dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            self.skipped.setdefault(split, [])
            dataset = self.build_dataset(split)
            if hasattr(dataset, "tokenizer"):
                dataset.tokenizer = self.tokenizer
            self.datasets[split] = dataset
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        splits = STAGE_SPLITS.get(stage or "")
        if splits is None:
            evaluated = self.test_split_names
            splits = evaluated if stage == "test" else ("train", "validation", *evaluated)
        for split in splits:
            self.dataset(split)

    def loader(self, split: str) -> DataLoader:
        """Training: shuffled (sharded under DDP), continuing a resumed epoch; evaluation: in
        order, unsharded (unless :meth:`batch_sampler` says otherwise)."""
        dataset = self.dataset(split)
        # overfit_batches means "the same few batches every epoch": no shuffling
        shuffle = split == "train" and not getattr(self.trainer, "overfit_batches", 0)
        batches = self.batch_sampler(split, dataset, shuffle)
        batching = (
            {"batch_sampler": batches}
            if batches is not None
            else {"batch_size": self.eval_batch_size, "shuffle": False}
        )
        if split == "train" and batches is not None:
            # random draws of loading a batch come from the batch's own seed
            dataset = SeededItems(dataset)
            if self._resume_position is not None:
                batches.resume(**self._resume_position)
                self._resume_position = None
        return DataLoader(
            dataset,
            **batching,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn(split),
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            # (random draws in workers come from SeededItems, not from per-worker seeds)
            worker_init_fn=ignore_preemption_signals,
            # the workers' base seed comes from here, not from the global RNG, so creating an
            # iterator (e.g. on resume) never shifts the model's random stream
            generator=torch.Generator().manual_seed(self.seed),
        )

    # --- exact resume: Lightning saves and restores these with every checkpoint ------------
    # (a datamodule's state is restored before the task's configure_optimizers builds the
    # training loader through ``trainer.estimated_stepping_batches``; a loader's own state
    # would be restored only after that loader had started its epoch)

    def state_dict(self) -> dict[str, Any]:
        """Where training stands, read off the trainer's loop counters: the epoch being trained
        and how many of its batches are done (a finished epoch points at the next one)."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        fit_loop = trainer.fit_loop
        epoch = fit_loop.epoch_progress.current.ready - 1
        done = fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:
            epoch, done = epoch + 1, 0
        return {"train_position": {"epoch": epoch, "batches_done": done}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The next training loader continues at the saved position."""
        self._resume_position = state_dict.get("train_position")

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("validation")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        loaders = [self.loader(split) for split in self.test_split_names]
        return loaders[0] if len(loaders) == 1 else loaders
