"""The clip transform of training and evaluation (torchvision.transforms.v2), apart from the
data module so that inference applies the same one without the training stack."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from mmembed.data.image_transforms import photometric_jitter, random_erasing

__all__ = ["KINETICS_MEAN", "KINETICS_STD", "VideoTransform"]

# torchvision's video-classification references (Kinetics-400 statistics).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


class VideoTransform:
    """uint8 frames (..., T, C, H, W) -> normalised float clips (..., C, T, H, W).

    Training: random resized crop (one crop for all frames of a clip), an optional horizontal
    flip (off by default: a flip turns "moving left" into "moving right"), and optional colour
    jitter, greyscale and random erasing, each the same for every frame of the clip.
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
        color_jitter: float = 0.0,
        grayscale_p: float = 0.0,
        erasing_p: float = 0.0,
    ):
        after = []
        if train:
            steps = [v2.RandomResizedCrop(size, scale=tuple(crop_scale), antialias=True)]
            if horizontal_flip_p > 0:
                steps.append(v2.RandomHorizontalFlip(horizontal_flip_p))
            steps += photometric_jitter(color_jitter, color_jitter, color_jitter, 0.0)
            after = random_erasing(erasing_p)
        else:
            steps = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
        # v2.RandomGrayscale passes videos through unchanged (torchvision 0.26), so greyscale is
        # applied here, on the frames as a batch of images
        self.grayscale_p = grayscale_p if train else 0.0
        self.geometric = v2.Compose(steps)
        self.transform = v2.Compose(
            [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std)), *after]
        )

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        clip = self.geometric(tv_tensors.Video(frames))
        if self.grayscale_p > 0 and torch.rand(()).item() < self.grayscale_p:
            grey = F.rgb_to_grayscale(clip.as_subclass(torch.Tensor), num_output_channels=3)
            clip = tv_tensors.Video(grey)
        clip = self.transform(clip)
        return clip.as_subclass(torch.Tensor).movedim(-4, -3).contiguous()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.geometric}, grayscale_p={self.grayscale_p}, "
            f"{self.transform})"
        )
