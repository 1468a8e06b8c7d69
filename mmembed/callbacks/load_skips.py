"""Report, at the end of each epoch, the items that failed to load during it."""

from __future__ import annotations

import lightning as L
import torch.distributed as dist

from mmembed.data.datamodule import TaskDataModule
from mmembed.data.skips import LoadSkipWarning, SkippedItem, warn_skipped


class LoadSkipsReport(L.Callback):
    """One warning per split at the end of every training, validation and test epoch, naming
    the items that failed to load since the last one (files whose header was fine but whose
    contents were not). The data module has counted them in its ``skipped``, which the final
    report summarises.

    Under DDP every rank loads its own share of the training data, so the ranks' skips are
    gathered first: every rank's data module, and so rank 0's final report, then knows all of
    them.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)

    def _report(self, trainer: L.Trainer) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if not isinstance(datamodule, TaskDataModule):
            return
        new = datamodule.take_unreported_skips()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[dict[str, list[SkippedItem]] | None] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, new)
            new = _merge(gathered)
            for split, items in new.items():
                datamodule.record_load_skips(split, items)
            datamodule.take_unreported_skips()
        if not trainer.is_global_zero:
            return
        for split, items in new.items():
            total = len(datamodule.dataset(split))
            warn_skipped(f"{split} (at load time)", items, total, "items", LoadSkipWarning)


def _merge(per_rank: list[dict[str, list[SkippedItem]] | None]) -> dict[str, list[SkippedItem]]:
    merged: dict[str, dict[SkippedItem, None]] = {}
    for skips in per_rank:
        for split, items in (skips or {}).items():
            merged.setdefault(split, {}).update(dict.fromkeys(items))
    return {split: list(items) for split, items in merged.items()}
