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
- the skipped-items report: :attr:`skipped` lists every item each split left out, those found
  when it was indexed and those that failed later, when loaded in a DataLoader worker (the
  collate carries them in the batch, :meth:`on_before_batch_transfer` records them here);
- :meth:`prepare_splits`: index every split a run will read before its first step, so a
  missing or malformed file fails then, not after training;
- the text report: once a split and the tokenizer both exist, the characters of its texts the
  tokenizer cannot represent are counted (:attr:`text_coverage`) and reported once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, Sampler

from mmembed.data.sampling import training_sampler
from mmembed.data.skips import SKIPPED, SkippedItem
from mmembed.data.splits import SPLITS
from mmembed.text.coverage import TextCoverage, UnrepresentedTextWarning, text_coverage

STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",)}


def check_positive(name: str, value: Any) -> None:
    """A count of items (a batch size) must be a positive integer; the error names it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive number of items, got {value!r}")


class TaskDataModule(L.LightningDataModule):
    """Base of the mmembed data modules.

    Subclasses implement :meth:`build_dataset` (recording skipped items in
    ``self.skipped[split]``) and :meth:`training_texts`, and may override :meth:`collate_fn`,
    :meth:`loader` and :meth:`text_items`.

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
            if value is not None:
                check_positive(name, value)
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
        self.text_coverage: dict[str, TextCoverage] = {}
        # skips found at load time since take_unreported_skips() was last called
        self._unreported: dict[str, list[SkippedItem]] = {}
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

    def train_sampler(self, dataset: Dataset) -> Sampler | None:
        """The training sampler: a shuffling ``DistributedSampler`` under DDP, else None (a
        plain shuffle). A sampler returned here must shard across ranks itself."""
        return training_sampler(dataset, self.seed)

    def text_items(self, split: str) -> list[tuple[str, str]]:
        """``(where, text)`` of every text ``split`` holds (transcripts, captions), as the data
        set writes it, for the text report; none by default."""
        return []

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
        self.text_coverage.clear()
        for split, dataset in self.datasets.items():
            if hasattr(dataset, "tokenizer"):
                dataset.tokenizer = tokenizer
            self._check_text(split)

    def dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            self.skipped.setdefault(split, [])
            dataset = self.build_dataset(split)
            if hasattr(dataset, "tokenizer"):
                dataset.tokenizer = self.tokenizer
            self.datasets[split] = dataset
            self._check_text(split)
        return self.datasets[split]

    def prepare_splits(self, fit: bool = True, test: bool = True) -> None:
        """Index now every split that fitting and testing will read: a missing or malformed
        file (a test set named in the config but absent) then fails before the first training
        step instead of after the last."""
        for split in [*STAGE_SPLITS["fit"]] * fit + self.test_split_names * test:
            self.dataset(split)

    def _check_text(self, split: str) -> None:
        if self.tokenizer is None or not hasattr(self.tokenizer, "encode"):
            return
        coverage = text_coverage(self.text_items(split), self.tokenizer)
        self.text_coverage[split] = coverage
        if coverage:
            warnings.warn(f"{split}: {coverage.describe()}", UnrepresentedTextWarning, stacklevel=3)

    # --- items that fail at load time ------------------------------------------------------

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning's hook, in the main process: take the items that failed to load out of
        the batch (workers cannot reach this object) and record them."""
        if isinstance(batch, dict) and SKIPPED in batch:
            failed = batch.pop(SKIPPED)
            split = self._split_in_progress(dataloader_idx)
            if failed and split is not None:
                self.record_load_skips(split, failed)
        return batch

    def record_load_skips(self, split: str, items: Iterable[SkippedItem]) -> None:
        """Add items that failed at load time to ``skipped[split]``, once each (a bad file fails
        again every epoch), and to those :meth:`take_unreported_skips` returns."""
        known = self.skipped.setdefault(split, [])
        for item in items:
            if item not in known:
                known.append(item)
                self._unreported.setdefault(split, []).append(item)

    def take_unreported_skips(self) -> dict[str, list[SkippedItem]]:
        """The load-time skips recorded since the last call, per split (then forgotten)."""
        unreported, self._unreported = self._unreported, {}
        return unreported

    def _split_in_progress(self, dataloader_idx: int) -> str | None:
        trainer = self.trainer
        if trainer is None:
            return None
        if trainer.training:
            return "train"
        if trainer.testing:
            return self.test_split_names[dataloader_idx]
        if trainer.validating or trainer.sanity_checking:
            return "validation"
        return None

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
        sampler = self.train_sampler(dataset) if train else None
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
