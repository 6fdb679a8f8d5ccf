"""Between the uint8 images a dataset yields and the normalised tensor a model reads, through pixel space.

`DeviceAugment` (eval mode) goes uint8 -> [0, 1] floats at the model's resolution -> normalised in one call;
attacks and occlusion need the middle step, so it is split here with the same operations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mixbench.data.device_augment import DeviceAugment


def to_pixels(images: torch.Tensor, augment: DeviceAugment) -> torch.Tensor:
    """uint8 N,C,H,W -> float in [0, 1] at `augment.image_size` (the eval preset's resize, nothing random)."""
    x = images.float().div(255)
    size = augment.image_size
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1)


def normalise(pixels: torch.Tensor, augment: DeviceAugment) -> torch.Tensor:
    return (pixels - augment.mean.to(pixels.device)) / augment.std.to(pixels.device)
