"""PIL transform presets for the file datasets, run in loader workers; they output uint8 C,H,W tensors.

Normalisation is not done here: `device_augment` does it on the accelerator, batched.

- tiny family:     train RandomResizedCrop(size, bicubic) + flip;  eval resize to size (no centre crop)
- imagenet family: train RandomResizedCrop(size, bicubic) + flip;  eval resize the shorter side to
                   int(size / 0.875) (256 for 224), bicubic, then centre crop size

Random draws come from a `random.Random` the caller seeds per item (see `FileDataset`), not from global
state, so they are reproducible whatever process runs them. The crop follows the Inception-style
RandomResizedCrop (scale 0.08-1, log-uniform aspect 3/4-4/3, 10 tries, then a centre crop).
"""

from __future__ import annotations

import math
import random

import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

EVAL_CROP_FRACTION = 0.875  # the classic 224/256


def random_resized_crop_box(width: int, height: int, rng: random.Random, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a random crop covering `scale` of the area with aspect in `ratio`."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    # Fallback: the largest centred crop whose aspect is inside `ratio`.
    if width / height < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif width / height > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


class RandomResizedCropFlip:
    def __init__(self, size: int):
        self.size = size

    def __call__(self, img: Image.Image, rng: random.Random) -> torch.Tensor:
        box = random_resized_crop_box(*img.size, rng)
        # Crop and resize in one resampling pass (PIL reads only the box).
        img = img.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return pil_to_tensor(img)


class Resize:
    def __init__(self, size: int):
        self.size = size

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.Resampling.BICUBIC)
        return pil_to_tensor(img)


class ResizeCenterCrop:
    def __init__(self, size: int):
        self.size = size
        self.resize_to = int(size / EVAL_CROP_FRACTION)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        width, height = img.size
        short = min(width, height)
        if short != self.resize_to:
            scale = self.resize_to / short
            if width <= height:
                new_size = (self.resize_to, int(height * scale))
            else:
                new_size = (int(width * scale), self.resize_to)
            img = img.resize(new_size, Image.Resampling.BICUBIC)
        width, height = img.size
        left, top = round((width - self.size) / 2), round((height - self.size) / 2)
        return pil_to_tensor(img.crop((left, top, left + self.size, top + self.size)))


def train_transform(family: str, size: int) -> RandomResizedCropFlip:
    if family not in ("tiny", "imagenet"):
        raise ValueError(f"no PIL train preset for family {family!r}; file datasets are 'tiny' or 'imagenet'")
    return RandomResizedCropFlip(size)


def eval_transform(family: str, size: int) -> Resize | ResizeCenterCrop:
    if family == "tiny":
        return Resize(size)
    if family == "imagenet":
        return ResizeCenterCrop(size)
    raise ValueError(f"no PIL eval preset for family {family!r}; file datasets are 'tiny' or 'imagenet'")
