"""CutMix (Yun et al., ICCV 2019): paste a box of the partner image; λ is the area that stays.

Matches openmixup's `augments/cutmix.py` (REFERENCE.md §3): λ ~ Beta(α, α), one permutation (redrawn up to 10
times while a sample is paired with itself) and one box per batch; box size (int(H·√(1-λ)), int(W·√(1-λ))),
centre uniform over the whole image, half-extents `cut // 2` on both sides, clipped to the image, and λ
recomputed from the clipped area. Unlike the reference the
caller's tensor is never written to. Added, as timm offers: `p`, the probability of mixing, and the
per-sample mode "elem" (one λ and one box per sample).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.methods.base import BetaMixer, MixedBatch, permutation_avoiding_self_pairs
from mixbench.methods.registry import register_method


def box_bounds(lam: Tensor, center: Tensor, height: int, width: int) -> Tensor:
    """Clipped boxes (y1, y2, x1, x2) as an int64 tensor (..., 4) for λ (...,) and centres in [0, 1) (..., 2).

    The centre fraction u maps to the pixel floor(u·H), i.e. a uniform integer in [0, H), as `randint(H)`.
    """
    return scaled_box_bounds(torch.sqrt(1.0 - lam.to(torch.float64)), center, height, width)


def scaled_box_bounds(r: Tensor, center: Tensor, height: int, width: int) -> Tensor:
    """`box_bounds` for a box of side fraction `r` (...,): size (int(H·r), int(W·r)), half-extents `cut // 2`."""
    r = r.to(torch.float64)
    cut_h = (height * r).floor().long()
    cut_w = (width * r).floor().long()
    cy = (center[..., 0].to(torch.float64) * height).floor().long()
    cx = (center[..., 1].to(torch.float64) * width).floor().long()
    y1 = (cy - cut_h // 2).clamp(0, height)
    y2 = (cy + cut_h // 2).clamp(0, height)
    x1 = (cx - cut_w // 2).clamp(0, width)
    x2 = (cx + cut_w // 2).clamp(0, width)
    return torch.stack([y1, y2, x1, x2], dim=-1)


def box_area_lam(boxes: Tensor, height: int, width: int) -> Tensor:
    """λ = 1 - box area / image area, in float64 (exact for the integer box)."""
    area = (boxes[..., 1] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 2])
    return 1.0 - area.to(torch.float64) / (height * width)


def box_mask(boxes: Tensor, height: int, width: int, device: torch.device) -> Tensor:
    """(N, 1, H, W) float mask: 1 where the first image is kept, 0 inside each sample's box."""
    boxes = boxes.to(device).view(-1, 4)
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    inside = (
        (rows >= boxes[:, 0, None, None]) & (rows < boxes[:, 1, None, None])
        & (cols >= boxes[:, 2, None, None]) & (cols < boxes[:, 3, None, None])
    )
    return (~inside).unsqueeze(1).float()


def paste_boxes(x: Tensor, index: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """x with each sample's box taken from x[index]: one shared box (4,) or one per sample (N, 4).

    Returns the new tensor and the keep-mask; `x` itself is never written to.
    """
    height, width = x.shape[-2:]
    index = index.to(x.device)
    if boxes.dim() == 1:  # one box: copy just the box region, the cheap path
        y1, y2, x1, x2 = (int(v) for v in boxes)
        out = x.clone()
        out[:, :, y1:y2, x1:x2] = x[index, :, y1:y2, x1:x2]
        mask = box_mask(boxes, height, width, x.device).expand(x.shape[0], -1, -1, -1)
        return out, mask
    mask = box_mask(boxes, height, width, x.device)
    return torch.where(mask.bool(), x, x[index]), mask


@register_method
class CutMix(BetaMixer):
    name = "cutmix"
    version = 2  # 2: the permutation is redrawn while a sample is paired with itself, as the reference
    paper_name = "CutMix"
    display_order = 20
    cost_multiplier = 1.0
    cost_source = "a box copy; no measurable cost on GPU (openmixup ViT table)"

    def permutation(self, batch_size: int, gen: torch.Generator) -> Tensor:
        return permutation_avoiding_self_pairs(batch_size, gen)

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        drawn = super().sample(batch_size, gen)
        drawn["center"] = torch.rand((*drawn["lam"].shape, 2), generator=gen, dtype=torch.float64)
        return drawn

    def mix(self, x: Tensor, y: Tensor, lam: Tensor, index: Tensor, center: Tensor) -> MixedBatch:
        height, width = x.shape[-2:]
        boxes = box_bounds(lam, center, height, width)
        mixed, mask = paste_boxes(x, index, boxes)
        return MixedBatch(
            x=mixed, y_a=y, y_b=y[index.to(y.device)], lam=box_area_lam(boxes, height, width), mask=mask
        )
