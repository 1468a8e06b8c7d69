"""The contract between mmembed's data modules and the training app and tasks.

Every data module reads one data set in a standard format (NeMo manifests, COCO captions,
CSV/folder videos) and never generates data: embedded corpora are built by the app's
``corpus`` step (:mod:`mmembed.datagen`) before the data module is used. What the app and the
tasks rely on, implemented once here:

- splits: ``"train"``, ``"validation"``, ``"test"`` and optional extra test sets
  (:attr:`test_split_names`, in loader order); datasets are built once per split and cached;
- ``training_texts()``: the texts a tokenizer is trained on (training split only);
- ``set_tokenizer(tokenizer)``: the hook the app calls once the tokenizer exists;
- loaders: training data shuffled, and sharded across ranks under DDP (the trainers set
  ``use_distributed_sampler: false``: the speech batch sampler shards itself); evaluation
  unsharded, so every rank scores whole splits and per-item metrics stay exact;
- the skipped-items report: :attr:`skipped` lists every item each split left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from mmembed.data.sampling import training_sampler
from mmembed.data.skips import SkippedItem
from mmembed.data.splits import SPLITS

STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",)}


class TaskDataModule(L.LightningDataModule):
    """Base of the mmembed data modules.

    Subclasses implement :meth:`build_dataset` (recording skipped items in
    ``self.skipped[split]``) and :meth:`training_texts`, and may override :meth:`collate_fn`
    and :meth:`loader`.

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
        self._extra_test_names: list[str] = []

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

    # --- the contract ----------------------------------------------------------------------

    def add_extra_tests(
        self, option: str, files: Mapping[str, str | PathLike] | None, data_dir: Path
    ) -> dict[str, Path]:
        """Register more test sets (name -> file, relative to ``data_dir`` or absolute) after
        the main one, as the ``option`` argument named them; return their paths by name."""
        files = dict(files or {})
        clashing = set(files) & set(SPLITS)
        if clashing:
            raise ValueError(f"{option} may not reuse the split names {sorted(clashing)}")
        self._extra_test_names = list(files)
        return {name: data_dir / file for name, file in files.items()}

    @property
    def test_split_names(self) -> list[str]:
        """The test sets, in the order ``test_dataloader`` returns their loaders: ``"test"``,
        then those given to :meth:`add_extra_tests`."""
        return ["test", *self._extra_test_names]

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
        """Training: shuffled (sharded under DDP); evaluation: in order, unsharded."""
        train = split == "train"
        dataset = self.dataset(split)
        sampler = training_sampler(dataset, self.seed) if train else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn(split),
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("validation")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        loaders = [self.loader(split) for split in self.test_split_names]
        return loaders[0] if len(loaders) == 1 else loaders
