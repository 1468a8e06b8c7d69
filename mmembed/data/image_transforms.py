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
    grayscale_p: float = 0.0,
    erasing_p: float = 0.0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Light augmentation that keeps what a caption can say about the image.

    No horizontal flip and no hue jitter: captions name directions ("backhand index pointing
    right") and colours ("green apple", "blue heart"), which those would make wrong. Greyscale
    (``grayscale_p``) has the same problem and is off by default; random erasing
    (``erasing_p``, a patch set to the mean colour) helps models that latch onto one detail.
    """
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(
                (image_size, image_size), scale=crop_scale, ratio=(0.9, 1.1), antialias=True
            ),
            *photometric_jitter(brightness, contrast, saturation, grayscale_p),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
            *random_erasing(erasing_p),
        ]
    )


def photometric_jitter(
    brightness: float, contrast: float, saturation: float, grayscale_p: float
) -> list[v2.Transform]:
    """Colour jitter and random greyscale, the same for every frame of a clip."""
    steps: list[v2.Transform] = []
    if brightness or contrast or saturation:
        steps.append(v2.ColorJitter(brightness, contrast, saturation))
    if grayscale_p > 0:
        steps.append(v2.RandomGrayscale(grayscale_p))
    return steps


def random_erasing(erasing_p: float) -> list[v2.Transform]:
    """Erase one random patch to zero (the mean colour, after normalisation)."""
    return [v2.RandomErasing(erasing_p, scale=(0.02, 0.2), value=0.0)] if erasing_p > 0 else []


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
