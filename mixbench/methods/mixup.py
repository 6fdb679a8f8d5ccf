"""Mixup (Zhang et al., ICLR 2018): a convex combination of two images and of their labels.

Matches openmixup's `augments/mixup.py` (REFERENCE.md §2): one λ ~ Beta(α, α) and one permutation per batch,
x' = λ·x + (1-λ)·x[π], loss λ·CE(y) + (1-λ)·CE(y[π]); the input is never modified. Added, as timm offers:
`p`, the probability that a batch (or, in "elem" mode, a sample) is mixed at all, and the per-sample
mode "elem" with one λ per sample.
"""

from __future__ import annotations

from torch import Tensor

from mixbench.methods.base import BetaMixer, MixedBatch
from mixbench.methods.registry import register_method


@register_method
class Mixup(BetaMixer):
    name = "mixup"
    version = 1
    paper_name = "Mixup"
    display_order = 10
    cost_multiplier = 1.0
    cost_source = "mixing is elementwise; no measurable cost on GPU (openmixup ViT table)"

    def mix(self, x: Tensor, y: Tensor, lam: Tensor, index: Tensor) -> MixedBatch:
        index = index.to(x.device)
        if lam.dim() == 0:
            w = float(lam)  # a Python scalar: the same arithmetic as the reference
            mixed = w * x + (1 - w) * x[index]
        else:
            w = lam.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))
            mixed = w * x + (1 - w) * x[index]
        return MixedBatch(x=mixed, y_a=y, y_b=y[index.to(y.device)], lam=lam)
