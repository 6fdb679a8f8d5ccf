"""`synthetic`: a small, learnable 10-class image set generated in memory; it needs no files.

Each class is a shape (disc, square, triangle, plus, ring, horizontal bars, vertical bars, X, checker,
diamond) drawn at a random position and scale, in a colour whose hue leans towards the class's own
(k/10) but overlaps its neighbours', on a random dark background, with pixel noise. Colour alone is thus a
weak cue and the shape has to be learned, yet a linear model on pixels clearly beats chance. 32×32 RGB,
2000 train / 500 val images, labels 0..9 repeating in file order; the images depend only on `seed` and
the split (train and val are drawn from different streams). Class index = the shape's position above.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from mixbench.data.dataset import InMemoryDataset
from mixbench.data.registry import CIFAR_MEAN, CIFAR_STD, DatasetInfo, DatasetSpec, register_dataset

SPLIT_SIZES = {"train": 2000, "val": 500}
SIZE = 32
Mask = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _box(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 1


# Shapes in coordinates (u, v) centred on the shape and scaled by its radius.
SHAPES: dict[str, Mask] = {
    "disc": lambda u, v: u**2 + v**2 <= 1,
    "square": lambda u, v: torch.maximum(u.abs(), v.abs()) <= 0.8,
    "triangle": lambda u, v: (v <= 0.7) & (u.abs() <= (v + 0.9) / 1.6),
    "plus": lambda u, v: ((u.abs() <= 0.3) & (v.abs() <= 1)) | ((v.abs() <= 0.3) & (u.abs() <= 1)),
    "ring": lambda u, v: ((u**2 + v**2) <= 1) & ((u**2 + v**2) >= 0.3),
    "horizontal_bars": lambda u, v: _box(u, v) & (torch.floor((v + 1) * 2.5) % 2 == 0),
    "vertical_bars": lambda u, v: _box(u, v) & (torch.floor((u + 1) * 2.5) % 2 == 0),
    "x": lambda u, v: _box(u, v) & (((u - v).abs() <= 0.35) | ((u + v).abs() <= 0.35)),
    "checker": lambda u, v: _box(u, v) & ((torch.floor((u + 1) * 2) + torch.floor((v + 1) * 2)) % 2 == 0),
    "diamond": lambda u, v: u.abs() + v.abs() <= 1,
}


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """N hues/saturations/values in [0,1] -> N×3 RGB in [0,1]."""
    channels = []
    for n in (5, 3, 1):
        k = (n + h * 6) % 6
        channels.append(v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels, dim=1)


def generate(n: int, seed: int, split_stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` images (uint8 N,3,32,32) and labels (int64, 0..9 repeating), fixed by (seed, split_stream)."""
    gen = torch.Generator().manual_seed(2 * seed + split_stream)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=gen)

    num_classes = len(SHAPES)
    labels = torch.arange(n) % num_classes
    centre = (SIZE - 1) / 2 + uniform(-6, 6, n, 2)
    radius = uniform(6, 11, n)
    hue = (labels / num_classes + uniform(-0.12, 0.12, n)) % 1
    fg = _hsv_to_rgb(hue, uniform(0.5, 1, n), uniform(0.65, 1, n))
    bg = _hsv_to_rgb(uniform(0, 1, n), uniform(0, 0.6, n), uniform(0, 0.35, n))
    noise = 0.08 * torch.randn(n, 3, SIZE, SIZE, generator=gen)

    grid = torch.arange(SIZE, dtype=torch.float32)
    u = (grid.view(1, 1, SIZE) - centre[:, 0].view(n, 1, 1)) / radius.view(n, 1, 1)
    v = (grid.view(1, SIZE, 1) - centre[:, 1].view(n, 1, 1)) / radius.view(n, 1, 1)
    mask = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    for k, shape in enumerate(SHAPES.values()):
        chosen = labels == k
        mask[chosen] = shape(u[chosen], v[chosen])
    images = torch.where(mask.unsqueeze(1), fg.view(n, 3, 1, 1), bg.view(n, 3, 1, 1)) + noise
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


def make_synthetic(info: DatasetInfo, root: Path | None, split: str, *, image_size: int,
                   limit_per_class: int | None, seed: int = 0) -> InMemoryDataset:
    # Generate the whole split, then keep the first k per class: a limited set is part of the full one.
    images, labels = generate(SPLIT_SIZES[split], seed, 0 if split == "train" else 1)
    return InMemoryDataset(info, None, split, list(SHAPES), images, labels, image_size, limit_per_class)


SYNTHETIC = register_dataset(DatasetSpec(
    DatasetInfo(name="synthetic", family="cifar", num_classes=10, image_size=SIZE, in_chans=3, mean=CIFAR_MEAN,
                std=CIFAR_STD, in_memory=True, default_root=None, expected_counts=dict(SPLIT_SIZES)),
    make_synthetic, needs_root=False))
