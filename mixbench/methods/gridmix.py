"""GridMix (Baek et al., "GridMix: Strong regularization through local context mapping", Pattern Recognition
2021): a grid of rectangular holes inside a random crop region shows the partner; λ is the area that stays.

Matches openmixup's `augments/gridmix.py` and the code it cites (IlyaDobrynin/GridMixup, `GridMixupLoss`):
one draw and one permutation per batch of λ ~ Beta(α, α), the number of holes across the crop n ~ randint
[n_holes] (inclusive), the hole aspect ratio, the crop's area ratio and aspect ratio ~ U(range), and the
crop's corner fractions cx, cy ~ U[0, 1). Then

    crop area A = int(H·W·area_ratio); crop width cw = int(√(A / aspect)); crop height ch = int(cw·aspect)
    crop corner x0 = int((W - cw)·cx), y0 = int((H - ch)·cy)         (negative when the crop is larger)
    patch width pw = ⌈cw / n⌉, patch height ph = int(pw·hole_aspect); rows of patches ny = ⌈ch / ph⌉
    hole size (int(pw·√(1-λ)), int(ph·√(1-λ))), each clamped to [1, patch - 1]
    holes at (pw·i, ph·j) for i ≤ n, j ≤ ny, clipped to the crop, then written at (x0, y0) + hole

and λ = 1 - (hole pixels) / HW, exactly the area that stays; labels (y, y[π]).

The holes are written with Python slice semantics, as both references write them (`mask[a:b, c:d] = 1`):
where the crop is larger than the image (e.g. aspect 2 at area ratio 1) its corner is negative and a hole
slice with a negative start wraps to the far edge of the image or comes out empty. That is what the
published numbers were made with, so it is reproduced; since every hole is a product of a row slice and a
column slice and every (row, column) pair is a hole, the mask is the outer product of two 1-D indicators.

Deliberate differences from the reference:
* Non-square images: the reference places the crop along the width from the height and vice versa (its
  `W = size[2]`); here x is the width and y the height. Square images: identical.
* Where the drawn number of holes exceeds cw // 2 the reference asserts; it is capped at max(cw // 2, 1) here
  (only images below ~28 px reach it with the default ranges). A patch width or height of 0 (a crop under
  one pixel, or a hole aspect below 1 / pw) is raised to 1 where the reference would divide by zero.
* `mode="elem"` (one grid per sample) and `p` (probability of mixing; a draw that does not mix has no holes)
  are additions. The caller's tensor is never written to; every draw comes from the trial's generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.methods._masking import draw_apply, draw_count, mix_with_masks, uniform, value_range
from mixbench.methods.base import InputMixer, MixedBatch, check_mix_args, random_permutation, sample_beta
from mixbench.methods.registry import register_method


def python_slice_bounds(start: Tensor, stop: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """[start', stop') that `range(length)[start:stop]` selects, elementwise: negatives count from the end."""
    start = torch.where(start < 0, start + length, start).clamp(0, length)
    stop = torch.where(stop < 0, stop + length, stop).clamp(0, length)
    return start, stop


def hole_indicator(corner: Tensor, pitch: Tensor, hole: Tensor, extent: Tensor, count: Tensor, length: int
                   ) -> Tensor:
    """(n, length) bool: the pixels along one axis covered by the holes `corner + [pitch·k, pitch·k + hole)`,
    k = 0..count, each clipped to [0, extent] within the crop, then sliced with Python semantics."""
    k = torch.arange(int(count.max()) + 1, device=corner.device)[None, :]
    first = torch.minimum(pitch[:, None] * k, extent[:, None])
    last = torch.minimum(first + hole[:, None], extent[:, None])
    start, stop = python_slice_bounds(corner[:, None] + first, corner[:, None] + last, length)
    valid = k <= count[:, None]
    pixels = torch.arange(length, device=corner.device)[None, None, :]
    covered = (pixels >= start[..., None]) & (pixels < stop[..., None]) & valid[..., None]
    return covered.any(dim=1)


def grid_holes(lam: Tensor, n_holes: Tensor, hole_aspect: Tensor, area_ratio: Tensor, crop_aspect: Tensor,
               corner: Tensor, height: int, width: int) -> Tensor:
    """(n, H, W) bool: the holes (where the partner shows) of each drawn grid (module docstring)."""
    area = torch.floor(height * width * area_ratio)
    crop_w = torch.floor(torch.sqrt(area / crop_aspect))
    crop_h = torch.floor(crop_w * crop_aspect)
    x0 = torch.trunc((width - crop_w) * corner[:, 0]).long()
    y0 = torch.trunc((height - crop_h) * corner[:, 1]).long()
    crop_w, crop_h = crop_w.long(), crop_h.long()
    n = torch.minimum(n_holes.long(), torch.clamp(crop_w // 2, min=1))
    patch_w = torch.ceil(crop_w / n).long().clamp(min=1)
    patch_h = torch.trunc(patch_w * hole_aspect).long().clamp(min=1)
    rows = torch.ceil(crop_h / patch_h).long()
    ratio = torch.sqrt(1 - lam.to(torch.float64))
    hole_w = torch.minimum(torch.floor(patch_w * ratio).long().clamp(min=1), patch_w - 1)
    hole_h = torch.minimum(torch.floor(patch_h * ratio).long().clamp(min=1), patch_h - 1)
    cols = hole_indicator(x0, patch_w, hole_w, crop_w, n, width)
    rows_ = hole_indicator(y0, patch_h, hole_h, crop_h, rows, height)
    return rows_[:, :, None] & cols[:, None, :]


@register_method
class GridMix(InputMixer):
    name = "gridmix"
    version = 1
    paper_name = "GridMix"
    display_order = 66
    cost_multiplier = 1.0
    cost_source = ("a mask from two 1-D indicators per step; openmixup's CIFAR-100 ViT tables list GridMix at "
                   "vanilla's memory and hours (8.2 G / 27 h DeiT-S, 11.4 G / 36 h Swin-T)")
    eval_passes = 1

    def __init__(
        self,
        alpha: float = 1.0,
        n_holes: int | list[int] | tuple[int, int] = 20,
        hole_aspect_ratio: float | list[float] | tuple[float, float] = 1.0,
        cut_area_ratio: float | list[float] | tuple[float, float] = 1.0,
        cut_aspect_ratio: float | list[float] | tuple[float, float] = 1.0,
        p: float = 1.0,
        mode: str = "batch",
        label_smoothing: float = 0.0,
    ):
        super().__init__(label_smoothing=label_smoothing)
        check_mix_args(alpha, p, mode, unit="mask")
        holes = value_range(n_holes, "n_holes (holes across the crop)", low=1)
        if not all(float(v).is_integer() for v in holes):
            raise ValueError(f"n_holes (holes across the crop) must be whole numbers; got {n_holes!r}")
        self.n_holes = [int(holes[0]), int(holes[1])]
        self.hole_aspect_ratio = list(value_range(hole_aspect_ratio, "hole_aspect_ratio", low=1e-6))
        self.cut_area_ratio = list(value_range(cut_area_ratio, "cut_area_ratio", low=1e-6))
        if self.cut_area_ratio[1] > 1:
            raise ValueError(
                f"cut_area_ratio (the crop's share of the image) must be at most 1; got {cut_area_ratio!r}"
            )
        self.cut_aspect_ratio = list(value_range(cut_aspect_ratio, "cut_aspect_ratio", low=1e-6))
        self.alpha, self.p, self.mode = alpha, p, mode

    def check_input(self, image_size: tuple[int, int], backbone_name: str) -> None:
        height, width = image_size
        if height < 4 or width < 4:
            raise ValueError(f"GridMix needs images of at least 4×4 px for a grid of holes; got {height}×{width}")

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        n = draw_count(batch_size, self.mode)
        lo, hi = self.n_holes
        return {
            "lam": sample_beta(self.alpha, n, gen),
            "n_holes": torch.randint(lo, hi + 1, (n,), generator=gen),
            "hole_aspect": uniform(*self.hole_aspect_ratio, n, gen),
            "area_ratio": uniform(*self.cut_area_ratio, n, gen),
            "crop_aspect": uniform(*self.cut_aspect_ratio, n, gen),
            "corner": torch.rand((n, 2), generator=gen, dtype=torch.float64),  # (cx, cy), as the reference
            "apply": draw_apply(self.p, n, gen),
            "index": random_permutation(batch_size, gen),
        }

    def mix(self, x: Tensor, y: Tensor, lam: Tensor, n_holes: Tensor, hole_aspect: Tensor, area_ratio: Tensor,
            crop_aspect: Tensor, corner: Tensor, apply: Tensor, index: Tensor) -> MixedBatch:
        height, width = x.shape[-2:]
        holes = grid_holes(lam, n_holes, hole_aspect, area_ratio, crop_aspect, corner, height, width)
        keep = (~holes).unsqueeze(1).to(torch.float64)
        return mix_with_masks(x, y, index, keep, apply, self.mode)
