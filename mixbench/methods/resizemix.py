"""ResizeMix (Qin et al., "ResizeMix: Mixing Data with Preserved Object Information and True Labels", arXiv
2012.11101, 2020): the whole partner image, resized, pasted into a box; λ is the area that stays.

Matches openmixup's `augments/resizemix.py` (there is no official code): one scale τ, one box and one
permutation per batch; τ ~ U(scope), or with `use_alpha` τ ~ Beta(α, α) redrawn from U(scope) when it falls
outside the scope; box size (int(H·τ), int(W·τ)), centre uniform over the whole image, half-extents `cut // 2`
on both sides, clipped to the image (CutMix's box); x[π] resized to the clipped box with `interpolation`
("nearest" in openmixup, or any mode of `torch.nn.functional.interpolate`) and pasted; λ = 1 - box area / HW,
labels (y, y[π]).

Deliberate differences from the reference:
* Non-square images: the reference sizes and places the box along the width from the height and vice versa
  (its `W = size[2]`); here the box's height comes from H and its width from W. Square images: identical.
* A box clipped to zero area pastes nothing (the reference would ask `interpolate` for a 0-pixel image).
* `mode="elem"` (one τ and box per sample) and `p` (probability of mixing) are additions, as for CutMix.
  The caller's tensor is never written to (the reference pastes in place), and every draw comes from the
  trial's generator: with `use_alpha` the uniform fallback is drawn every time (a different stream, the same
  distribution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.methods._masking import draw_apply, draw_count, uniform, value_range
from mixbench.methods.base import InputMixer, MixedBatch, check_mix_args, random_permutation, sample_beta
from mixbench.methods.cutmix import box_area_lam, box_mask, scaled_box_bounds
from mixbench.methods.registry import register_method

INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")


@register_method
class ResizeMix(InputMixer):
    name = "resizemix"
    version = 1
    paper_name = "ResizeMix"
    display_order = 68
    cost_multiplier = 1.0
    cost_source = ("one resize of the batch per step; openmixup's CIFAR-100 ViT tables list ResizeMix at vanilla's "
                   "memory and hours (8.2 G / 27 h DeiT-S, 11.4 G / 36 h Swin-T)")
    eval_passes = 1

    def __init__(
        self,
        alpha: float = 1.0,
        scope: tuple[float, float] | list[float] = (0.1, 0.8),
        use_alpha: bool = False,
        interpolation: str = "nearest",
        p: float = 1.0,
        mode: str = "batch",
        label_smoothing: float = 0.0,
    ):
        super().__init__(label_smoothing=label_smoothing)
        check_mix_args(alpha, p, mode, unit="mask")
        lo, hi = value_range(scope, "scope (the range of the box's side fraction τ)")
        if hi > 1:
            raise ValueError(f"scope (the range of the box's side fraction τ) must lie in [0, 1]; got {scope!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}")
        self.alpha, self.scope, self.use_alpha = alpha, [float(lo), float(hi)], use_alpha
        self.interpolation, self.p, self.mode = interpolation, p, mode

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        n = draw_count(batch_size, self.mode)
        lo, hi = self.scope
        if self.use_alpha:
            drawn = sample_beta(self.alpha, n, gen)
            fallback = uniform(lo, hi, n, gen)
            tau = torch.where((drawn < lo) | (drawn > hi), fallback, drawn)
        else:
            tau = uniform(lo, hi, n, gen)
        apply = draw_apply(self.p, n, gen)
        return {
            "tau": torch.where(apply, tau, torch.zeros_like(tau)),  # τ = 0: an empty box, nothing pasted
            "center": torch.rand((n, 2), generator=gen, dtype=torch.float64),
            "index": random_permutation(batch_size, gen),
        }

    def mix(self, x: Tensor, y: Tensor, tau: Tensor, center: Tensor, index: Tensor) -> MixedBatch:
        height, width = x.shape[-2:]
        boxes = scaled_box_bounds(tau, center, height, width)
        index = index.to(x.device)
        out = x.clone()
        for i, (y1, y2, x1, x2) in enumerate(boxes.tolist()):
            if y2 <= y1 or x2 <= x1:
                continue
            rows = slice(None) if self.mode == "batch" else slice(i, i + 1)
            partners = x[index[rows]]
            out[rows, :, y1:y2, x1:x2] = F.interpolate(partners, size=(y2 - y1, x2 - x1), mode=self.interpolation)
        lam = box_area_lam(boxes, height, width)
        mask = box_mask(boxes, height, width, x.device)
        if self.mode == "batch":
            lam, mask = lam[0], mask.expand(x.shape[0], -1, -1, -1)
        return MixedBatch(x=out, y_a=y, y_b=y[index.to(y.device)], lam=lam, mask=mask)
