"""What a video classifier exports: the clip graph and, with the text head, the label graph
that embeds class names through the shared table (zero-shot labels at predict time)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.export import Dim

from mmembed.inference.export.builder import ExportPlan, GraphSpec
from mmembed.inference.export.rebuild import TrainedModel
from mmembed.models.text_encoder import tokenize_texts

MAX_CLIPS, MAX_LABELS, MAX_LABEL_TOKENS = 4096, 65536, 1024


class ClipScoresGraph(nn.Module):
    """Text head: ``(clips (B, 3, T, H, W), label_embeddings (N, width)) -> logits (B, N)``;
    linear head: ``clips -> logits (B, classes)``."""

    def __init__(self, task):
        super().__init__()
        self.task = task

    def forward(self, clips: torch.Tensor, label_embeddings: torch.Tensor | None = None):
        if label_embeddings is None:
            return self.task(clips)
        return self.task.cosine_head(self.task.encoder(clips), label_embeddings)


class LabelGraph(nn.Module):
    """``(ids (N, L), mask (N, L)) -> label_embeddings (N, width)``."""

    def __init__(self, task):
        super().__init__()
        self.label_encoder = task.label_encoder

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.label_encoder.encode(ids, mask)


def clip_preprocessing(data: dict[str, Any]) -> dict[str, Any]:
    """How the predictor cuts a video into the run's evaluation clips, from the video data
    module's settings."""
    return {
        "sampling": {
            "frames_per_clip": int(data["frames_per_clip"]),
            "frame_stride": int(data["frame_stride"]),
            "target_fps": data["target_fps"],
            "loop_short_videos": bool(data["loop_short_videos"]),
        },
        "num_clips": int(data["num_eval_clips"]),
        "size": int(data["size"]),
        "mean": list(data["mean"]),
        "std": list(data["std"]),
    }


def plan(trained: TrainedModel) -> ExportPlan:
    task = trained.task
    data = trained.data
    frames, size = int(data["frames_per_clip"]), int(data["size"])
    generator = torch.Generator().manual_seed(0)
    clips = Dim("clips", min=1, max=MAX_CLIPS)
    text_head = task.head == "text"

    def clip_inputs(count: int) -> tuple[torch.Tensor, ...]:
        videos = torch.randn(count, 3, frames, size, size, generator=generator)
        return (
            (videos, task.label_embeddings(task.class_names).detach()) if text_head else (videos,)
        )

    graphs = {
        "clips": GraphSpec(
            module=ClipScoresGraph(task),
            example=clip_inputs(3),
            dynamic_shapes=({0: clips}, {0: Dim("labels", min=1, max=MAX_LABELS)})[
                : 2 if text_head else 1
            ],
            inputs=("clips", "label_embeddings")[: 2 if text_head else 1],
            outputs=("logits",),
            sample=clip_inputs(2),
        )
    }
    tensors = {}
    if text_head:
        labels, tokens = (
            Dim("labels", min=1, max=MAX_LABELS),
            Dim("tokens", min=1, max=MAX_LABEL_TOKENS),
        )
        # traced on names of distinct lengths; checked on the training classes
        graphs["labels"] = GraphSpec(
            module=LabelGraph(task),
            example=tokenize_texts(task.tokenizer, ["ab", "abc", "abcd"]),
            dynamic_shapes=({0: labels, 1: tokens}, {0: labels, 1: tokens}),
            inputs=("ids", "mask"),
            outputs=("label_embeddings",),
            sample=tokenize_texts(task.tokenizer, task.class_names),
        )
        with torch.no_grad():
            tensors["label_embeddings"] = task.label_embeddings(task.class_names)
    config = {
        "tokenizer": task.tokenizer.to_dict(),
        "preprocessing": clip_preprocessing(data),
        "class_names": list(task.class_names),
        "head": task.head,
    }
    return ExportPlan("video_classification", graphs, config, tensors=tensors)
