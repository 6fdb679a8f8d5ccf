"""What the mask-based input mixers (FMix, ResizeMix's box aside, GridMix, SmoothMix) share.

Each of them draws its parameters with a leading dimension of 1 ("batch": one mask for the whole batch, as
the references) or N ("elem": one mask per sample), builds masks of shape (n, 1, H, W) holding the per-pixel
weight of the first image, and mixes with them. `p` is the probability that a batch (or sample) is mixed at
all; a draw that does not mix keeps the whole first image (mask of ones, λ = 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.methods.base import MixedBatch


def value_range(value: float | int | list | tuple, name: str, low: float = 0.0) -> tuple[float, float]:
    """A hyper-parameter given as a value or a [min, max] range, as (min, max); openmixup's `to_2tuple`."""
    pair = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, float)) for v in pair):
        raise ValueError(f"{name} must be a number or a [min, max] pair; got {value!r}")
    lo, hi = pair
    if not low <= lo <= hi:
        raise ValueError(f"{name} must satisfy {low} <= min <= max; got {value!r}")
    return lo, hi


def draw_count(batch_size: int, mode: str) -> int:
    """How many masks a draw holds: 1 for the batch, or one per sample."""
    return 1 if mode == "batch" else batch_size


def draw_apply(p: float, n: int, gen: torch.Generator) -> Tensor:
    """(n,) bool: which masks mix at all. p = 1 draws nothing, so the rest of the stream is p's no-op."""
    if p >= 1.0:
        return torch.ones(n, dtype=torch.bool)
    return torch.rand(n, generator=gen, dtype=torch.float64) < p


def uniform(lo: float, hi: float, n: int, gen: torch.Generator) -> Tensor:
    """(n,) float64 draws from U[lo, hi), as `np.random.uniform(lo, hi)`."""
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def mix_with_masks(x: Tensor, y: Tensor, index: Tensor, keep: Tensor, apply: Tensor, mode: str) -> MixedBatch:
    """Mix x with x[index] by `keep` (n, 1, H, W), the weight of x; λ is the mean of `keep` per mask.

    Masks whose draw did not mix (`apply` False) keep the whole image. In "batch" mode the one mask is
    broadcast over the batch and λ is 0-d. `x` is never written to.
    """
    keep = torch.where(apply.to(keep.device).view(-1, 1, 1, 1), keep, torch.ones_like(keep))
    lam = keep.to(torch.float64).mean(dim=(1, 2, 3)).cpu()
    index = index.to(x.device)
    weight = keep.to(device=x.device, dtype=x.dtype)
    mixed = weight * x + (1 - weight) * x[index]
    mask = weight.expand(x.shape[0], -1, -1, -1) if mode == "batch" else weight
    return MixedBatch(x=mixed, y_a=y, y_b=y[index.to(y.device)], lam=lam[0] if mode == "batch" else lam, mask=mask)
