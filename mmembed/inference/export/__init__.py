"""``mmembed-export``'s side: rebuild a trained task from its run, export its graphs, package
them with everything the predictor needs, check the result, write it atomically.

This side imports the training stack (Hydra to rebuild the task); the predicting side
(:mod:`mmembed.inference.predictor`) never does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import torch

from mmembed.inference.artifact import write_artifact
from mmembed.inference.export.builder import ExportPlan, build_artifact, verify
from mmembed.inference.export.rebuild import ExportError, TrainedModel, load_trained

__all__ = ["ExportError", "export_artifact", "export_trained", "plan_export"]

log = logging.getLogger(__name__)


def plan_export(trained: TrainedModel) -> ExportPlan:
    """The task's exporter's plan (by the task's class)."""
    from mmembed.inference.export import captioning, multimodal, speech, video
    from mmembed.tasks.image_captioning import ImageCaptioning
    from mmembed.tasks.multimodal import MultimodalEmbedding
    from mmembed.tasks.speech_recognition import SpeechRecognition
    from mmembed.tasks.video_classification import VideoClassification

    planners = {
        SpeechRecognition: speech.plan,
        ImageCaptioning: captioning.plan,
        VideoClassification: video.plan,
        MultimodalEmbedding: multimodal.plan,
    }
    for task_class, planner in planners.items():
        if isinstance(trained.task, task_class):
            return planner(trained)
    raise ExportError(f"no exporter for {type(trained.task).__name__}")


def export_trained(
    trained: TrainedModel,
    out: str | PathLike,
    runtimes: Sequence[str] = ("torch", "onnx"),
    device: str | torch.device = "cpu",
    check: bool = True,
) -> Path:
    """Export an already rebuilt model (see :func:`export_artifact`)."""
    out = Path(out)
    artifact = build_artifact(plan_export(trained), trained, out, runtimes, device)
    if check:
        verify(artifact, runtimes, device)
    path = write_artifact(out, artifact.manifest, artifact.members)
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def export_artifact(
    source: str | PathLike,
    out: str | PathLike,
    runtimes: Sequence[str] = ("torch", "onnx"),
    device: str | torch.device = "cpu",
    config: str | PathLike | None = None,
    check: bool = True,
) -> Path:
    """Export the trained model of a run folder or checkpoint to one ``.mmembed`` file.

    Args:
        source: an ``mmembed-train`` run folder (its best checkpoint) or a ``.ckpt``.
        out: the artifact to write (atomically: nothing appears under that name on failure).
        runtimes: which graph files to include: ``"torch"`` (torch.export programs),
            ``"onnx"``, ``"onnx-int8"`` (speech: int8 weight products, not exact), ``"aoti"``
            (AOTInductor packages; ``device="cuda"`` only).
        device: where the graphs are exported (and AOTInductor compiles).
        config: the run's Hydra config if not in ``<run folder>/.hydra/config.yaml``.
        check: load the result in every runtime and run its self-test before writing.
    """
    return export_trained(load_trained(source, config), out, runtimes, device, check)
