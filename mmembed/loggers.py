"""CSV and TensorBoard loggers whose series continue across a resume.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when a run starts in a folder that has one,
so a requeued run lost its history; TensorBoard kept both the interrupted run's steps after
the checkpoint and the resumed run's. Here a resumed run (:meth:`continue_from`, called by the
app with the checkpoint's step count) keeps every row logged before the checkpoint, drops what
the interrupted run logged after it, and continues the series; TensorBoard does the same
through its ``purge_step``. The CSV file is also flushed at every checkpoint, so a kill does not
lose the rows the checkpoint already covers.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _ContinuingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, first_step: int | None):
        self.first_step = first_step
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        if self.first_step is None or not os.path.isfile(self.metrics_file_path):
            super()._check_log_dir_exists()
            return
        with open(self.metrics_file_path, newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            kept = [row for row in reader if int(float(row["step"])) < self.first_step]
        temporary = f"{self.metrics_file_path}.tmp"
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(temporary, self.metrics_file_path)
        self.metrics_keys = header


class CSVLogger(LightningCSVLogger):
    """Lightning's ``CSVLogger`` (same arguments), continuing its ``metrics.csv`` on resume."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._first_step: int | None = None
        self._flush_next = False

    def continue_from(self, step: int) -> None:
        """Keep the rows logged before ``step``; this run logs from ``step`` on."""
        self._first_step = step

    @property
    def experiment(self) -> _ContinuingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self._first_step)
        return self._experiment

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        if self._flush_next:  # the step a checkpoint was taken at, logged after it
            self._flush_next = False
            self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.save()
        self._flush_next = True


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's ``TensorBoardLogger`` (same arguments), continuing its series on resume."""

    def continue_from(self, step: int) -> None:
        """TensorBoard discards the earlier events from ``step`` on (``purge_step``)."""
        self._kwargs["purge_step"] = step  # read when the SummaryWriter is created
