"""On-device, batched augmentation and normalisation: uint8 batch in, float32 normalised batch out.

In-memory datasets (the CIFAR family) get their train preset here, on the accelerator: a random crop of
the image zero-padded by 4 px and a horizontal flip with p=0.5. Offsets and flips are drawn from the
caller's CPU generator (so a seeded run is reproducible on any device) and applied as one gather, with
no Python loop over samples. File datasets were already cropped and flipped by the PIL presets in the
loader workers; for them, and for every eval batch, this only converts to float, divides by 255 and
normalises. A batch whose size differs from `image_size` (e.g. CIFAR trained at 224) is resized
bilinearly after the crop. Grey images stay 1-channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from mixbench.data.registry import DatasetInfo

CROP_PADDING = 4


def device_augment(info: DatasetInfo, train: bool, image_size: int | None = None) -> DeviceAugment:
    # A mirrored digit is no digit (or another one), so MNIST is cropped but not flipped.
    crop_flip = train and info.in_memory
    return DeviceAugment(info.mean, info.std, image_size=image_size or info.image_size, crop=crop_flip,
                         hflip=crop_flip and info.name != "mnist")


class DeviceAugment(torch.nn.Module):
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], *, image_size: int, crop: bool,
                 hflip: bool, padding: int = CROP_PADDING):
        super().__init__()
        self.image_size, self.crop, self.hflip, self.padding = image_size, crop, hflip, padding
        for name, value in (("mean", mean), ("std", std)):
            buffer = torch.tensor(value, dtype=torch.float32).view(1, -1, 1, 1)
            self.register_buffer(name, buffer, persistent=False)

    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"DeviceAugment: expected a uint8 N,{self.mean.shape[1]},H,W batch, "
                             f"got {x.dtype} {tuple(x.shape)}")
        if self.crop or self.hflip:
            if gen is None:
                raise ValueError("DeviceAugment: train mode draws crops and flips from `gen`; pass a CPU "
                                 "torch.Generator")
            x = self.crop_flip(x, gen)
        x = x.float().div_(255)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def crop_flip(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        pad = self.padding if self.crop else 0
        top = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        left = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        flip = torch.rand(n, generator=gen) < 0.5 if self.hflip else torch.zeros(n, dtype=torch.bool)
        top, left, flip = (t.to(x.device, non_blocking=True) for t in (top, left, flip))
        rows = top[:, None] + torch.arange(h, device=x.device)  # N,H rows of the padded image
        cols = left[:, None] + torch.arange(w, device=x.device)  # N,W
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # N,H+2p,W+2p,C
        batch = torch.arange(n, device=x.device)[:, None, None]
        return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
