"""What a multimodal embedding model exports: one graph per modality's path into the shared
space (:meth:`~mmembed.tasks.multimodal.MultimodalEmbedding.embedder`), each giving unit-norm
``(B, width)`` embeddings, and each part's preprocessing (the run's evaluation data's)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.export import Dim

from mmembed.inference.export.builder import ExportPlan, GraphSpec
from mmembed.inference.export.decoder import MAX_ITEMS
from mmembed.inference.export.rebuild import ExportError, TrainedModel
from mmembed.inference.export.speech import WaveformInputs, use_onnx_forms
from mmembed.inference.export.video import MAX_CLIPS, MAX_LABEL_TOKENS, clip_preprocessing
from mmembed.models.text_encoder import tokenize_texts

MAX_TEXTS = 65536


def _part_settings(trained: TrainedModel, part: str, keys: tuple[str, ...]) -> dict[str, Any]:
    settings = trained.data.get(part)
    missing = [key for key in keys if key not in (settings or {})]
    if missing:
        raise ExportError(
            f"{trained.checkpoint}: the run's data config has no data.{part}.{missing[0]} "
            f"(is it a multimodal run's config?)"
        )
    return settings


def _audio_graph(task, generator: torch.Generator) -> tuple[GraphSpec, dict[str, Any]]:
    inputs = WaveformInputs.of(task.speech.encoder.frontend.melspec)
    embedder = task.embedder("audio")
    # the ONNX graph's encoder in the speech export's faster forms
    onnx_embedder = copy.deepcopy(embedder)
    use_onnx_forms(onnx_embedder.encoder)
    spec = GraphSpec(
        module=embedder,
        onnx_module=onnx_embedder,
        example=inputs.example(generator),
        dynamic_shapes=inputs.dynamic_shapes(),
        onnx_dynamic_shapes=inputs.dynamic_shapes(whole_hops=True),
        inputs=("waveforms", "lengths"),
        outputs=("embeddings",),
        sample=inputs.sample(generator),
    )
    return spec, inputs.preprocessing()


def _image_graph(trained: TrainedModel, generator: torch.Generator):
    data = _part_settings(trained, "captions", ("image_size", "mean", "std"))
    size = int(data["image_size"])
    spec = GraphSpec(
        module=trained.task.embedder("image"),
        example=(torch.randn(3, 3, size, size, generator=generator),),
        dynamic_shapes=({0: Dim("batch", min=1, max=MAX_ITEMS)},),
        inputs=("images",),
        outputs=("embeddings",),
        sample=(torch.randn(2, 3, size, size, generator=generator),),
    )
    preprocessing = {"image_size": size, "mean": list(data["mean"]), "std": list(data["std"])}
    return spec, preprocessing


def _video_graph(trained: TrainedModel, generator: torch.Generator):
    keys = ("frames_per_clip", "frame_stride", "target_fps", "loop_short_videos",
            "num_eval_clips", "size", "mean", "std")  # fmt: skip
    data = _part_settings(trained, "video", keys)
    frames, size = int(data["frames_per_clip"]), int(data["size"])

    def videos(count: int, clips: int) -> tuple[torch.Tensor]:
        return (torch.randn(count, clips, 3, frames, size, size, generator=generator),)

    # videos of K clips each (B, K, 3, T, H, W): the graph averages a video's clips
    spec = GraphSpec(
        module=trained.task.embedder("video"),
        example=videos(3, 2),
        dynamic_shapes=(
            {0: Dim("videos", min=1, max=MAX_ITEMS), 1: Dim("clips", min=1, max=MAX_CLIPS)},
        ),
        inputs=("clips",),
        outputs=("embeddings",),
        sample=videos(2, int(data["num_eval_clips"])),
    )
    return spec, clip_preprocessing(data)


def _text_graph(task) -> tuple[GraphSpec, dict[str, Any]]:
    encoder = task.text_encoder
    # with Transformer layers the learned positions bound the length; texts are cut there
    max_length = encoder.max_length if encoder.layers is not None else None
    texts, tokens = (
        Dim("texts", min=1, max=MAX_TEXTS),
        Dim("tokens", min=1, max=max_length or MAX_LABEL_TOKENS),
    )
    names = list(task.video.class_names) or ["ab", "abcd"]
    spec = GraphSpec(
        module=task.embedder("text"),
        # traced on texts of distinct lengths; checked on the class names
        example=tokenize_texts(task.tokenizer, ["ab", "abc", "abcd"]),
        dynamic_shapes=({0: texts, 1: tokens}, {0: texts, 1: tokens}),
        inputs=("ids", "mask"),
        outputs=("embeddings",),
        sample=tokenize_texts(task.tokenizer, names, max_length),
    )
    return spec, {"max_length": max_length}


def plan(trained: TrainedModel) -> ExportPlan:
    task = trained.task
    generator = torch.Generator().manual_seed(0)
    audio, audio_preprocessing = _audio_graph(task, generator)
    image, image_preprocessing = _image_graph(trained, generator)
    video, video_preprocessing = _video_graph(trained, generator)
    text, text_preprocessing = _text_graph(task)
    graphs = {"audio": audio, "image": image, "video": video, "text": text}
    config = {
        "tokenizer": task.tokenizer.to_dict(),
        "width": int(task.width),
        "preprocessing": {
            "audio": audio_preprocessing,
            "image": image_preprocessing,
            "video": video_preprocessing,
            "text": text_preprocessing,
        },
        "class_names": list(task.video.class_names),
    }
    return ExportPlan("multimodal_embedding", graphs, config)
