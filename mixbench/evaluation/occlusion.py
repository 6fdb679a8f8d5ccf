"""Occlusion robustness: accuracy when a random fraction of the image's patches is dropped.

As openmixup's tools/analysis_tools/occlusion_robustness.py: the image is cut into a grid of equal patches and
round(fraction × patches) of them, chosen at random, are set to 0 in the normalised input (the dataset's mean
colour). Unlike openmixup, which draws one set of patches per batch, each image draws its own, from a
torch.Generator seeded by the evaluation seed, so the result does not depend on the batch size and every model
of every trial sees the same occluded images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_mask(n: int, size: int, grid: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """N,1,size,size float mask: 0 on round(fraction × grid²) random patches of each image, 1 elsewhere. Where
    `grid` does not divide `size`, patches differ by one pixel (nearest-neighbour upsampling of the grid)."""
    if not 1 <= grid <= size:
        raise ValueError(f"occlusion: a {grid}×{grid} grid of patches does not fit a {size} px image; fix: set "
                         f"evaluation.occlusion_grid between 1 and {size}")
    patches = grid * grid
    dropped = round(patches * fraction)
    ranks = torch.rand(n, patches, generator=gen).argsort(dim=1).argsort(dim=1)
    keep = (ranks >= dropped).float().view(n, 1, grid, grid)
    return F.interpolate(keep, size=(size, size), mode="nearest")


def occlude(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The normalised batch `x` with the masked patches set to 0 (a new tensor)."""
    return x * mask.to(x.device, x.dtype)
