"""The clip transform of training and evaluation (torchvision.transforms.v2), apart from the
data module so that inference applies the same one without the training stack."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["KINETICS_MEAN", "KINETICS_STD", "VideoTransform"]

# torchvision's video-classification references (Kinetics-400 statistics).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


class VideoTransform:
    """uint8 frames (..., T, C, H, W) -> normalised float clips (..., C, T, H, W).

    Training: random resized crop (one crop for all frames of a clip) and an optional
    horizontal flip, off by default because a flip turns "moving left" into "moving right".
    Evaluation: resize the short side, then centre crop.
    """

    def __init__(
        self,
        size: int,
        train: bool,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        horizontal_flip_p: float = 0.0,
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
    ):
        if train:
            steps = [v2.RandomResizedCrop(size, scale=tuple(crop_scale), antialias=True)]
            if horizontal_flip_p > 0:
                steps.append(v2.RandomHorizontalFlip(horizontal_flip_p))
        else:
            steps = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
        self.transform = v2.Compose(steps)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        clip = self.transform(tv_tensors.Video(frames))
        return clip.as_subclass(torch.Tensor).movedim(-4, -3).contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform})"
