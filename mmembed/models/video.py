"""Video encoders: clips (B, 3, T, H, W) -> one embedding (B, out_dim) in the shared width.

A backbone pools a clip to a feature vector (B, C); :class:`VideoEncoder` projects it to the
shared width. Backbones: torchvision's ``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d``,
``mvit_v2_s`` and ``swin3d_t``, built with ``weights=None`` (nothing is downloaded) and
optionally loaded from a local torchvision checkpoint, with their classification head dropped;
and :func:`video_small`, a narrow 3-D CNN on frames and frame differences, fast enough to train
on a CPU.

``forward`` is convolutions, pooling and shape arithmetic only, so encoders go through
``torch.export`` unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torchvision.models.video as tv_video
from torch import nn
from torch.nn import functional as F

from mmembed.models.backbone import BackboneEncoder, load_backbone_checkpoint

__all__ = [
    "VIDEO_BACKBONES",
    "VideoEncoder",
    "build_video_encoder",
    "torchvision_video_backbone",
    "video_small",
]


class PooledBackbone(nn.Module):
    """A trunk whose output is already one vector per clip: (B, channels).

    ``input_size``: (T, H, W) the trunk only accepts (``mvit_v2_s``'s position tables are built
    for one size); clips of another size are resized to it (trilinear) first.
    """

    def __init__(
        self, trunk: nn.Module, channels: int, input_size: tuple[int, int, int] | None = None
    ):
        super().__init__()
        self.trunk = trunk
        self.channels = channels
        self.input_size = tuple(input_size) if input_size is not None else None

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and tuple(clips.shape[-3:]) != self.input_size:
            clips = F.interpolate(
                clips, size=self.input_size, mode="trilinear", align_corners=False
            )
        return self.trunk(clips).flatten(1)


# --- the small CPU backbone ------------------------------------------------------------------


def _conv_bn_relu(in_channels: int, out_channels: int, kernel, stride, padding) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


def _stage(in_channels: int, out_channels: int, block: str, temporal_kernel: int) -> nn.Module:
    pad_t = temporal_kernel // 2
    if block == "3d":
        # One k x 3 x 3 conv: spatio-temporal filters can be oriented in (t, x, y), i.e. tuned
        # to a direction of motion directly.
        return _conv_bn_relu(
            in_channels, out_channels, (temporal_kernel, 3, 3), (1, 2, 2), (pad_t, 1, 1)
        )
    # (2+1)-D: a stride-2 spatial conv, then a temporal conv (cheaper, less direct on motion).
    return nn.Sequential(
        _conv_bn_relu(in_channels, out_channels, (1, 3, 3), (1, 2, 2), (0, 1, 1)),
        _conv_bn_relu(out_channels, out_channels, (temporal_kernel, 1, 1), 1, (pad_t, 0, 0)),
    )


class FrameDifferences(nn.Module):
    """Appends each frame's difference to the previous one as extra channels: (B, 2C, T, H, W).

    A static, textured background dominates raw pixels; the differences are zero there and
    show only what moves. On the motion corpus a small 3-D CNN stayed at chance for 5 epochs on
    raw frames and reached 30% with the differences added.
    """

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        differences = clips[:, :, 1:] - clips[:, :, :-1]
        # the first frame has no predecessor: zero motion, so T is kept
        differences = torch.cat([torch.zeros_like(clips[:, :, :1]), differences], dim=2)
        return torch.cat([clips, differences], dim=1)


BLOCKS = ("3d", "2+1d")


def video_small(
    channels: Sequence[int] = (24, 48, 96),
    temporal_kernel: int = 3,
    block: str = "3d",
    frame_differences: bool = True,
    dropout: float = 0.0,
) -> PooledBackbone:
    """A narrow 3-D CNN for CPU runs.

    Args:
        channels: one stage per entry, each halving the frame side (time is kept), BatchNorm +
            ReLU; then global average pooling, so any clip size works.
        temporal_kernel: k, the temporal extent of each conv; odd (padding keeps T).
        block: ``"3d"``: one k x 3 x 3 conv per stage; ``"2+1d"``: a 1 x 3 x 3 conv then a
            k x 1 x 1 conv.
        frame_differences: feed frame-to-frame differences next to the frames (see
            :class:`FrameDifferences`).
        dropout: on the pooled vector.
    """
    if not channels:
        raise ValueError("video_small needs at least one stage in channels")
    if temporal_kernel < 1 or temporal_kernel % 2 == 0:
        raise ValueError(f"temporal_kernel must be odd and positive, got {temporal_kernel}")
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
    layers: list[nn.Module] = [FrameDifferences()] if frame_differences else []
    previous = 6 if frame_differences else 3
    for width in channels:
        layers.append(_stage(previous, width, block, temporal_kernel))
        previous = width
    layers += [nn.AdaptiveAvgPool3d(1), nn.Flatten(1), nn.Dropout(dropout)]
    return PooledBackbone(nn.Sequential(*layers), channels[-1])


# --- torchvision backbones -------------------------------------------------------------------


@dataclass(frozen=True)
class VideoBackboneSpec:
    """How to turn a torchvision video classifier into a pooled feature backbone."""

    factory: Callable[..., nn.Module]
    # parameter-name prefix of the classification head (dropped; a checkpoint's head may be of
    # another number of classes, or absent)
    head_prefix: str
    strip_head: Callable[[nn.Module], int]  # replaces the head in place, returns feature width


def _strip_resnet(model: nn.Module) -> int:
    channels = model.fc.in_features
    model.fc = nn.Identity()
    return channels


def _strip_s3d(model: nn.Module) -> int:
    # S3D's fixed AvgPool3d((2, 7, 7)) only fits 16x224 input; adaptive pooling takes any size
    # and is the same operation at that size. Its forward means over (T, H, W) afterwards.
    channels = model.classifier[1].in_channels
    model.avgpool = nn.AdaptiveAvgPool3d(1)
    model.classifier = nn.Identity()
    return channels


def _strip_linear_head(model: nn.Module) -> int:
    # mvit_v2_s: head = (Dropout, Linear) on the class token; swin3d_t: head = Linear.
    linear = model.head[-1] if isinstance(model.head, nn.Sequential) else model.head
    model.head = nn.Identity()
    return linear.in_features


TORCHVISION_VIDEO_BACKBONES: dict[str, VideoBackboneSpec] = {
    "r3d_18": VideoBackboneSpec(tv_video.r3d_18, "fc.", _strip_resnet),
    "mc3_18": VideoBackboneSpec(tv_video.mc3_18, "fc.", _strip_resnet),
    "r2plus1d_18": VideoBackboneSpec(tv_video.r2plus1d_18, "fc.", _strip_resnet),
    "s3d": VideoBackboneSpec(tv_video.s3d, "classifier.", _strip_s3d),
    "mvit_v2_s": VideoBackboneSpec(tv_video.mvit_v2_s, "head.", _strip_linear_head),
    "swin3d_t": VideoBackboneSpec(tv_video.swin3d_t, "head.", _strip_linear_head),
}
VIDEO_BACKBONES = ("video_small", *TORCHVISION_VIDEO_BACKBONES)


# torchvision builds mvit_v2_s for 16 frames of 224x224 only (its relative position tables).
MVIT_INPUT_SIZE = (16, 224, 224)


def torchvision_video_backbone(
    name: str, checkpoint: str | os.PathLike | None = None
) -> PooledBackbone:
    """torchvision ``name`` built with ``weights=None``, loaded from ``checkpoint`` if given,
    without its classification head.

    ``mvit_v2_s`` only runs on 16x224x224 clips: other sizes are resized to that first (costly
    on small clips; prefer the CNNs there). The other backbones take any size large enough for
    their strides (``s3d``'s fixed final pooling is made adaptive).
    """
    if name not in TORCHVISION_VIDEO_BACKBONES:
        raise ValueError(f"unknown video backbone {name!r}; expected one of {VIDEO_BACKBONES}")
    spec = TORCHVISION_VIDEO_BACKBONES[name]
    model = spec.factory(weights=None)
    if checkpoint is not None:
        load_backbone_checkpoint(model, checkpoint, ignore_prefixes=(spec.head_prefix,))
    channels = spec.strip_head(model)
    return PooledBackbone(model, channels, MVIT_INPUT_SIZE if name == "mvit_v2_s" else None)


# --- encoder ---------------------------------------------------------------------------------


class VideoEncoder(BackboneEncoder):
    """backbone -> (dropout) -> linear projection to ``out_dim``.

    ``forward(clips (B, 3, T, H, W)) -> (B, out_dim)``. No normalisation here: a cosine head
    normalises itself, and a linear head wants the raw scale.
    """

    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int,
        dropout: float = 0.0,
        freeze_backbone: bool = False,
    ):
        super().__init__(backbone, out_dim, freeze_backbone)
        self.dropout = nn.Dropout(dropout)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.projection(self.dropout(self.backbone(clips)))


def build_video_encoder(
    name: str,
    out_dim: int,
    checkpoint: str | os.PathLike | None = None,
    freeze_backbone: bool = False,
    dropout: float = 0.0,
    channels: Sequence[int] = (24, 48, 96),
    temporal_kernel: int = 3,
    block: str = "3d",
    frame_differences: bool = True,
) -> VideoEncoder:
    """A video encoder giving one (B, out_dim) embedding per clip (B, 3, T, H, W).

    Args:
        name: ``"video_small"`` or a torchvision backbone: ``"r3d_18"``, ``"mc3_18"``,
            ``"r2plus1d_18"``, ``"s3d"``, ``"mvit_v2_s"``, ``"swin3d_t"``.
        out_dim: width of the embedding (the shared model width).
        checkpoint: local weights for the backbone, or None to start from random weights
            (pretrained weights are never downloaded). For torchvision backbones, a state dict
            of the full torchvision classifier (its published ``.pth`` files); the
            classification head may differ or be absent. For ``video_small``, a state dict of
            the backbone itself. A missing file or any other name/shape mismatch raises
            (``FileNotFoundError`` / :class:`CheckpointMismatchError`).
        freeze_backbone: train only the projection (for a pretrained backbone); the backbone
            is also kept in eval mode, so BatchNorm statistics stay those of the checkpoint.
        dropout: on the pooled backbone features, before the projection.
        channels, temporal_kernel, block, frame_differences: ``video_small`` only (see
            :func:`video_small`).
    """
    if name == "video_small":
        backbone = video_small(channels, temporal_kernel, block, frame_differences)
        if checkpoint is not None:
            load_backbone_checkpoint(backbone, checkpoint)
    elif name in TORCHVISION_VIDEO_BACKBONES:
        backbone = torchvision_video_backbone(name, checkpoint)
    else:
        raise ValueError(f"unknown video backbone {name!r}; expected one of {VIDEO_BACKBONES}")
    return VideoEncoder(backbone, out_dim, dropout=dropout, freeze_backbone=freeze_backbone)
