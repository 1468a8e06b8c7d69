"""Image encoders: grid features (B, N, width) in the shared model width.

A backbone turns images (B, 3, H, W) into a sequence of region features (B, N, C): the cells of
a CNN's last feature map, or a ViT's patch tokens. :class:`ImageEncoder` projects them to the
shared width, adds 2-D positions where the backbone has none (so a decoder can tell "pointing
left" from "pointing right") and normalises them, ready for a text decoder to cross-attend to.

Backbones: torchvision's ``resnet18/34/50``, ``convnext_tiny`` and ``vit_b_16``, built with
``weights=None`` (nothing is downloaded) and optionally loaded from a local torchvision
checkpoint, and :func:`small_cnn`, a few conv blocks fast enough to train on a CPU.

Everything in ``forward`` is shape arithmetic and tensor ops, so encoders go through
``torch.export`` unchanged.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from mmembed.models.backbone import BackboneEncoder, load_backbone_checkpoint

__all__ = ["BACKBONES", "ImageEncoder", "build_image_encoder", "small_cnn"]


# --- backbones -----------------------------------------------------------------------------


class GridBackbone(nn.Module):
    """A CNN trunk returning its last feature map as a sequence: (B, h*w, C) and (h, w)."""

    def __init__(self, trunk: nn.Module, channels: int):
        super().__init__()
        self.trunk = trunk
        self.channels = channels
        self.has_positions = False

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        features = self.trunk(images)  # (B, C, h, w)
        height, width = features.shape[-2:]
        return features.flatten(2).transpose(1, 2), height, width


class ViTBackbone(nn.Module):
    """torchvision ViT without its classification head: (B, 1 + N, C) tokens, class token
    first. The ViT adds its own learned positions."""

    def __init__(self, vit: torchvision.models.VisionTransformer):
        super().__init__()
        self.vit = vit
        self.channels = vit.hidden_dim
        self.has_positions = True

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        tokens = self.vit._process_input(images)  # patchify; asserts the configured image size
        cls = self.vit.class_token.expand(tokens.shape[0], -1, -1)
        tokens = self.vit.encoder(torch.cat([cls, tokens], dim=1))
        side = self.vit.image_size // self.vit.patch_size
        return tokens, side, side


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def small_cnn(channels: Sequence[int] = (32, 64, 128), dropout: float = 0.0) -> GridBackbone:
    """A small VGG-style CNN for CPU runs: a stride-2 stem, then per further entry of
    ``channels`` a stride-2 conv and a stride-1 conv (BatchNorm + ReLU each).

    The grid is ``H / 2**len(channels)`` on a side: 8x8 = 64 regions for 64-pixel images with
    the default three stages. ``dropout``: 2-D dropout on the output map (regularises memorising
    small corpora).
    """
    if not channels:
        raise ValueError("small_cnn needs at least one stage in channels")
    layers: list[nn.Module] = [_conv_block(3, channels[0], stride=2)]
    for in_channels, out_channels in zip(channels[:-1], channels[1:], strict=True):
        layers += [
            _conv_block(in_channels, out_channels, stride=2),
            _conv_block(out_channels, out_channels, stride=1),
        ]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return GridBackbone(nn.Sequential(*layers), channels[-1])


@dataclass(frozen=True)
class TorchvisionSpec:
    """How to cut a torchvision classifier down to a feature backbone."""

    factory: Callable[..., nn.Module]
    # parameter-name prefixes of the classification head, which is dropped (and may be absent
    # from, or differ in, a checkpoint: e.g. one trained on another number of classes)
    head_prefixes: tuple[str, ...]
    wrap: Callable[[nn.Module], nn.Module]


def _resnet_trunk(model: nn.Module) -> GridBackbone:
    # Module names kept as in torchvision, so the backbone's own state dict stays familiar.
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    trunk = nn.Sequential(OrderedDict((name, getattr(model, name)) for name in names))
    return GridBackbone(trunk, model.fc.in_features)


def _convnext_trunk(model: nn.Module) -> GridBackbone:
    # The classifier starts with a LayerNorm2d over channels: a per-position norm, so it applies
    # to the whole map as well as to the pooled vector it normally sees.
    final_norm = model.classifier[0]
    trunk = nn.Sequential(OrderedDict(features=model.features, norm=final_norm))
    return GridBackbone(trunk, final_norm.normalized_shape[0])


TORCHVISION_BACKBONES: dict[str, TorchvisionSpec] = {
    "resnet18": TorchvisionSpec(torchvision.models.resnet18, ("fc.",), _resnet_trunk),
    "resnet34": TorchvisionSpec(torchvision.models.resnet34, ("fc.",), _resnet_trunk),
    "resnet50": TorchvisionSpec(torchvision.models.resnet50, ("fc.",), _resnet_trunk),
    "convnext_tiny": TorchvisionSpec(
        torchvision.models.convnext_tiny, ("classifier.2.",), _convnext_trunk
    ),
    "vit_b_16": TorchvisionSpec(torchvision.models.vit_b_16, ("heads.",), ViTBackbone),
}
BACKBONES = ("small_cnn", *TORCHVISION_BACKBONES)


def _vit_position_adapter(image_size: int, patch_size: int):
    """Resize a checkpoint's ViT position table to this image size (bicubic, as torchvision
    does when fine-tuning at another resolution)."""
    from torchvision.models.vision_transformer import interpolate_embeddings

    def adapt(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        positions = state.get("encoder.pos_embedding")
        wanted = (image_size // patch_size) ** 2 + 1
        if positions is None or positions.shape[1] == wanted:
            return state
        return dict(interpolate_embeddings(image_size, patch_size, OrderedDict(state)))

    return adapt


def torchvision_backbone(
    name: str, checkpoint: str | os.PathLike | None = None, image_size: int = 224
) -> nn.Module:
    """torchvision ``name`` built with ``weights=None``, loaded from ``checkpoint`` if given,
    cut to its feature trunk. ``image_size`` only matters for ViT (its position table)."""
    spec = TORCHVISION_BACKBONES[name]
    kwargs = {}
    if name.startswith("vit"):
        if image_size % 16:
            raise ValueError(f"{name} needs image_size divisible by 16, got {image_size}")
        kwargs["image_size"] = image_size
    model = spec.factory(weights=None, **kwargs)
    if checkpoint is not None:
        adapt = _vit_position_adapter(image_size, 16) if name.startswith("vit") else None
        load_backbone_checkpoint(model, checkpoint, spec.head_prefixes, adapt)
    return spec.wrap(model)


# --- encoder -------------------------------------------------------------------------------


def grid_positions(height: int, width: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """2-D sine-cosine positions (h*w, dim), row-major like a flattened feature map: the first
    half of ``dim`` encodes the row, the second the column. Computed from the grid size, so any
    input resolution works (and export sees only arithmetic)."""
    quarter = dim // 4
    frequencies = torch.exp(
        torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(10000.0) / quarter)
    )
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None] * frequencies
    cols = torch.arange(width, device=device, dtype=torch.float32)[:, None] * frequencies
    row_part = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None, :].expand(-1, width, -1)
    col_part = torch.cat([cols.sin(), cols.cos()], dim=1)[None, :, :].expand(height, -1, -1)
    return torch.cat([row_part, col_part], dim=-1).reshape(height * width, dim).to(dtype)


class ImageEncoder(BackboneEncoder):
    """backbone -> linear projection to ``out_dim`` (+ 2-D positions) -> LayerNorm.

    ``forward(images (B, 3, H, W)) -> (B, N, out_dim)``: N grid regions (a ViT keeps its class
    token first, so N = 1 + patches).
    """

    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int,
        positions: bool = True,
        freeze_backbone: bool = False,
    ):
        super().__init__(backbone, out_dim, freeze_backbone)
        # A ViT's tokens already carry positions; a CNN's grid only implicitly, through padding.
        self.add_positions = positions and not backbone.has_positions
        if self.add_positions and out_dim % 4:
            raise ValueError(f"2-D positions need out_dim divisible by 4, got {out_dim}")
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens, height, width = self.backbone(images)
        tokens = self.projection(tokens)
        if self.add_positions:
            tokens = tokens + grid_positions(
                height, width, self.out_dim, device=tokens.device, dtype=tokens.dtype
            )
        return self.norm(tokens)


def build_image_encoder(
    name: str,
    out_dim: int,
    checkpoint: str | os.PathLike | None = None,
    image_size: int = 224,
    positions: bool = True,
    freeze_backbone: bool = False,
    channels: Sequence[int] = (32, 64, 128),
    dropout: float = 0.0,
) -> ImageEncoder:
    """An image encoder giving (B, N, out_dim) region features.

    Args:
        name: ``"small_cnn"`` or a torchvision backbone: ``"resnet18"``, ``"resnet34"``,
            ``"resnet50"``, ``"convnext_tiny"``, ``"vit_b_16"``.
        out_dim: width of the returned features (the shared model width).
        checkpoint: local weights for the backbone, or None to start from random weights
            (pretrained weights are never downloaded). For torchvision backbones, a state dict
            of the full torchvision classifier (its published ``.pth`` files); the
            classification head may differ or be absent. For ``small_cnn``, a state dict of
            the backbone itself. A missing file or any other name/shape mismatch raises.
        image_size: input side in pixels; ViT builds its position table for it (must divide by
            16; a checkpoint at another resolution has its positions interpolated). CNNs take
            any size.
        positions: add 2-D sine-cosine positions to CNN grids (ViT has its own).
        freeze_backbone: train only the projection (for a pretrained backbone); the backbone
            is also kept in eval mode, so BatchNorm statistics stay those of the checkpoint.
        channels, dropout: ``small_cnn`` only (see :func:`small_cnn`).
    """
    if name == "small_cnn":
        backbone = small_cnn(channels, dropout)
        if checkpoint is not None:
            load_backbone_checkpoint(backbone, checkpoint)
    elif name in TORCHVISION_BACKBONES:
        backbone = torchvision_backbone(name, checkpoint, image_size)
    else:
        raise ValueError(f"unknown image backbone {name!r}; expected one of {BACKBONES}")
    return ImageEncoder(backbone, out_dim, positions=positions, freeze_backbone=freeze_backbone)
