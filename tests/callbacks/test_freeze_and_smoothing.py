"""Freezing schedules and smoothed validation metrics."""

import functools
import tempfile

import lightning as L
import pytest
import torch

from mmembed import SharedEmbedding
from mmembed.callbacks.freeze import FreezeSchedule
from mmembed.callbacks.smoothing import SmoothedMetric
from mmembed.models.video import build_video_encoder
from mmembed.tasks.video_classification import VideoClassification
from mmembed.text import train_tokenizer

CLASSES = ["moving left", "moving right"]


class Clips(torch.utils.data.Dataset):
    def __init__(self, count=8, evaluation=False):
        generator = torch.Generator().manual_seed(0)
        shape = (count, 2, 3, 4, 16, 16) if evaluation else (count, 3, 4, 16, 16)
        self.clips = torch.randn(shape, generator=generator)
        self.labels = torch.arange(count) % 2

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        # the video data module's batch layout
        return {
            "clips": self.clips[index],
            "labels": self.labels[index],
            "video_indices": index,
            "paths": f"clip{index}.mp4",
        }


class Snapshots(L.Callback):
    """The encoder's weights and BatchNorm statistics after every training epoch."""

    def __init__(self):
        self.weights, self.running_means, self.grads_seen = [], [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        conv = pl_module.encoder.backbone.trunk[1][0]
        self.grads_seen.append(conv.weight.grad is not None)

    def on_train_epoch_end(self, trainer, pl_module):
        backbone = pl_module.encoder.backbone.trunk
        self.weights.append(backbone[1][0].weight.detach().clone())
        self.running_means.append(backbone[1][1].running_mean.clone())


def tiny_task():
    return VideoClassification(
        build_video_encoder("video_small", 16, channels=(8,)),
        tokenizer=train_tokenizer(CLASSES, kind="char"),
        embedding=functools.partial(SharedEmbedding, embedding_dim=8),
        width=16,
        class_names=CLASSES,
        optimizer=functools.partial(torch.optim.AdamW, lr=0.01),
    )


def fit(task, callbacks, epochs):
    # the run folder in a temporary one: the video task draws confusion matrices there
    trainer = L.Trainer(
        default_root_dir=tempfile.mkdtemp(prefix="mmembed-freeze-"),
        max_epochs=epochs, callbacks=callbacks, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(Clips(), batch_size=4)
    val = torch.utils.data.DataLoader(Clips(4, evaluation=True), batch_size=4)
    trainer.fit(task, loader, val)
    return trainer


@pytest.mark.slow
def test_frozen_modules_get_no_gradient_then_train_at_their_own_rate():
    task, snapshots = tiny_task(), Snapshots()
    before = task.encoder.backbone.trunk[1][0].weight.detach().clone()
    bn_before = task.encoder.backbone.trunk[1][1].running_mean.clone()
    trainer = fit(task, [FreezeSchedule(["encoder"], epochs=2, lr_factor=0.1), snapshots], 3)
    # frozen for epochs 0 and 1: no gradient, no update, BatchNorm statistics untouched
    assert snapshots.grads_seen[:4] == [False] * 4 and all(snapshots.grads_seen[4:])
    for epoch in (0, 1):
        assert torch.equal(snapshots.weights[epoch], before)
        assert torch.equal(snapshots.running_means[epoch], bn_before)
    assert not torch.equal(snapshots.weights[2], before)
    assert not torch.equal(snapshots.running_means[2], bn_before)
    # the encoder has its own parameter group at a tenth of the learning rate
    rates = sorted(group["lr"] for group in trainer.optimizers[0].param_groups)
    assert rates == pytest.approx([0.001, 0.01])


def test_two_schedules_keep_both_learning_rate_factors():
    # locked towers and a slower decoder: two schedules, one dict of factors on the task
    task = tiny_task()
    trainer = fit(task, [FreezeSchedule(["encoder.backbone"], epochs=1, lr_factor=0.1),
                         FreezeSchedule(["embedding"], epochs=0, lr_factor=0.5)], 1)  # fmt: skip
    assert task.lr_factors == {"encoder.backbone": 0.1, "embedding": 0.5}
    rates = sorted(group["lr"] for group in trainer.optimizers[0].param_groups)
    assert rates == pytest.approx([0.001, 0.005, 0.01])


def test_a_misspelled_module_fails_before_training():
    with pytest.raises(ValueError, match="has no module 'encodr'"):
        fit(tiny_task(), [FreezeSchedule(["encodr"])], 1)


@pytest.mark.slow
def test_smoothed_metric_is_the_mean_of_the_last_validations():
    smoothed = SmoothedMetric("val/video_top1", window=2)
    values = []

    class Record(L.Callback):
        def on_validation_end(self, trainer, pl_module):
            values.append(
                (
                    float(trainer.callback_metrics["val/video_top1"]),
                    float(trainer.callback_metrics["val/video_top1_smoothed"]),
                )
            )

    # listed after a reader of the monitored value, as an experiment's defaults may put it
    reader = L.pytorch.callbacks.EarlyStopping("val/video_top1_smoothed", mode="max", patience=9)
    fit(tiny_task(), [reader, smoothed, Record()], 3)
    raw = [value for value, _ in values]
    expected = [raw[0], (raw[0] + raw[1]) / 2, (raw[1] + raw[2]) / 2]
    assert [value for _, value in values] == pytest.approx(expected)
    # early stopping saw each validation's own average (it ran after the smoothing)
    assert float(reader.best_score) == pytest.approx(max(expected))
    restored = SmoothedMetric("val/video_top1", window=2)
    restored.load_state_dict(smoothed.state_dict())
    assert list(restored.history) == pytest.approx(raw[1:])
