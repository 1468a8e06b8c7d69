"""Default image transforms (torchvision.transforms.v2) for training and evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "denormalize", "eval_transform", "train_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(
    image_size: int,
    *,
    crop_scale: tuple[float, float] = (0.85, 1.0),
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.1,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Light augmentation that keeps what a caption can say about the image.

    No horizontal flip and no hue jitter: captions name directions ("backhand index pointing
    right") and colours ("green apple", "blue heart"), which those would make wrong.
    """
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(
                (image_size, image_size), scale=crop_scale, ratio=(0.9, 1.1), antialias=True
            ),
            v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
        ]
    )


def eval_transform(
    image_size: int,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Resize to a square (no crop, so nothing a reference mentions is cut off) and normalise."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((image_size, image_size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
        ]
    )


def denormalize(
    images: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Undo ``Normalize`` on ``(..., 3, H, W)`` images, clamped to [0, 1] for display."""
    shape = (3, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(shape)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(shape)
    return (images * std_t + mean_t).clamp(0.0, 1.0)
