"""The Mixup/CutMix switch of DeiT (Touvron et al., ICML 2021) and timm's `train.py`: "what timm does".

Matches timm's `timm.data.mixup.Mixup` (v1.0): with probability `mix_prob` a batch (or, in "elem" mode, a
sample) is mixed; it is then CutMix with probability `switch_prob`, else Mixup, with λ ~ Beta of that
method's α (an α of 0 turns a method off; the other one is then always used). The partner is the batch
reversed (`x.flip(0)`: sample i with sample N-1-i). CutMix's box is timm's `rand_bbox`: size
(int(H·√(1-λ)), int(W·√(1-λ))), centre uniform over the whole image, extents `cut // 2` before and
`(cut + 1) // 2` after it, clipped; with `correct_lam` (timm's default) λ becomes the area that stays.
Targets are λ·smooth(y) + (1-λ)·smooth(y[π]) with smooth(y) = (1-ε)·onehot + ε/K, i.e. the mixed cross-entropy
with label smoothing ε = `label_smoothing` (timm and DeiT: 0.1). DeiT's defaults: mixup_alpha 0.8,
cutmix_alpha 1.0, mix_prob 1, switch_prob 0.5, mode "batch".

Deliberate differences from timm:
* `cutmix_minmax` (a box from min/max side ratios instead of α) and the "pair" mode are not ported.
* The pairing is an `index` argument of the deterministic core (the draw is always the reversal, as timm);
  timm asserts an even batch, here an odd batch's middle sample is paired with itself (λ is then moot).
* λ per sample in "elem" mode is float64 (timm: float32). The caller's tensor is never written to (timm
  mixes in place), and every draw comes from the trial's generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.methods._masking import draw_apply, draw_count
from mixbench.methods.base import InputMixer, MixedBatch, sample_beta
from mixbench.methods.cutmix import box_area_lam, box_mask, paste_boxes
from mixbench.methods.registry import register_method


def timm_box_bounds(lam: Tensor, center: Tensor, height: int, width: int) -> Tensor:
    """timm's `rand_bbox` as (y1, y2, x1, x2) int64 (..., 4): extents cut // 2 before, (cut + 1) // 2 after."""
    r = torch.sqrt(1.0 - lam.to(torch.float64))
    cut_h, cut_w = (height * r).floor().long(), (width * r).floor().long()
    cy = (center[..., 0].to(torch.float64) * height).floor().long()
    cx = (center[..., 1].to(torch.float64) * width).floor().long()
    return torch.stack([
        (cy - cut_h // 2).clamp(0, height), (cy + (cut_h + 1) // 2).clamp(0, height),
        (cx - cut_w // 2).clamp(0, width), (cx + (cut_w + 1) // 2).clamp(0, width),
    ], dim=-1)


def reversed_pairs(batch_size: int) -> Tensor:
    """timm's pairing: sample i mixes with sample N-1-i."""
    return torch.arange(batch_size - 1, -1, -1)


@register_method
class MixupCutMix(InputMixer):
    name = "mixup_cutmix"
    version = 1
    paper_name = "Mixup/CutMix (DeiT)"
    display_order = 60
    cost_multiplier = 1.0
    cost_source = ("Mixup or CutMix per batch; openmixup's CIFAR-100 ViT tables list the DeiT switch at vanilla's "
                   "memory and hours (8.2 G / 27 h DeiT-S, 11.4 G / 36 h Swin-T)")
    eval_passes = 1

    def __init__(
        self,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        mix_prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.1,
    ):
        super().__init__(label_smoothing=label_smoothing)
        if mixup_alpha < 0 or cutmix_alpha < 0 or mixup_alpha == cutmix_alpha == 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0 and not both 0 (0 turns one off); got "
                             f"{mixup_alpha} and {cutmix_alpha}")
        for name, value in (("mix_prob", mix_prob), ("switch_prob", switch_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; got {value}")
        if mode not in ("batch", "elem"):
            raise ValueError(f"mode must be 'batch' (one draw per batch) or 'elem' (one per sample); got {mode!r}")
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.mix_prob, self.switch_prob, self.mode, self.correct_lam = mix_prob, switch_prob, mode, correct_lam

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        n = draw_count(batch_size, self.mode)
        apply = draw_apply(self.mix_prob, n, gen)
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = torch.rand(n, generator=gen, dtype=torch.float64) < self.switch_prob
        else:
            use_cutmix = torch.full((n,), self.cutmix_alpha > 0)
        ones = torch.ones(n, dtype=torch.float64)
        lam_mixup = sample_beta(self.mixup_alpha, n, gen) if self.mixup_alpha > 0 else ones
        lam_cutmix = sample_beta(self.cutmix_alpha, n, gen) if self.cutmix_alpha > 0 else ones
        lam = torch.where(apply, torch.where(use_cutmix, lam_cutmix, lam_mixup), ones)
        return {
            "lam": lam,
            "use_cutmix": use_cutmix,
            "center": torch.rand((n, 2), generator=gen, dtype=torch.float64),
            "index": reversed_pairs(batch_size),
        }

    def mix(self, x: Tensor, y: Tensor, lam: Tensor, use_cutmix: Tensor, center: Tensor, index: Tensor
            ) -> MixedBatch:
        height, width = x.shape[-2:]
        index = index.to(x.device)
        y_b = y[index.to(y.device)]
        lam = lam.to(torch.float64)
        # A sample mixed by Mixup (or not at all) has an empty box; λ = 1 gives one by itself.
        boxes = timm_box_bounds(torch.where(use_cutmix, lam, torch.ones_like(lam)), center, height, width)
        box_lam = box_area_lam(boxes, height, width) if self.correct_lam else lam
        lam = torch.where(use_cutmix, box_lam, lam)
        if self.mode == "batch":
            if float(lam[0]) == 1.0:
                return MixedBatch(x=x.clone(), y_a=y, y_b=y_b, lam=lam[0])
            if bool(use_cutmix[0]):
                mixed, mask = paste_boxes(x, index, boxes[0])
                return MixedBatch(x=mixed, y_a=y, y_b=y_b, lam=lam[0], mask=mask)
            w = float(lam[0])  # a Python scalar: timm's arithmetic
            return MixedBatch(x=w * x + (1 - w) * x[index], y_a=y, y_b=y_b, lam=lam[0])
        # Per sample: Mixup samples blend with weight λ_i; CutMix samples keep x outside their box.
        blend = torch.where(use_cutmix, torch.ones_like(lam), lam).to(device=x.device, dtype=x.dtype)
        blend = blend.view(-1, *([1] * (x.dim() - 1)))
        convex = blend * x + (1 - blend) * x[index]
        inside = box_mask(boxes, height, width, x.device)  # 1 outside each box
        mixed = torch.where(inside.bool(), convex, x[index])
        mask = torch.where(use_cutmix.to(x.device).view(-1, 1, 1, 1), inside, blend.to(inside.dtype).expand_as(inside))
        return MixedBatch(x=mixed, y_a=y, y_b=y_b, lam=lam, mask=mask)
