"""Mixup (Zhang et al., ICLR 2018): a convex combination of two images and of their labels.

Matches openmixup's `augments/mixup.py` (REFERENCE.md §2): one λ ~ Beta(α, α) and one permutation per batch,
x' = λ·x + (1-λ)·x[π], loss λ·CE(y) + (1-λ)·CE(y[π]); the input is never modified. Added, as timm offers:
`p`, the probability that a batch (or, in "elem" mode, a sample) is mixed at all, and the per-sample
mode "elem" with one λ per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.methods.base import InputMixer, MixedBatch, check_mix_args, draw_lam, random_permutation
from mixbench.methods.registry import register_method


@register_method
class Mixup(InputMixer):
    name = "mixup"
    version = 1
    paper_name = "Mixup"
    display_order = 10
    cost_multiplier = 1.0
    cost_source = "mixing is elementwise; no measurable cost on GPU (openmixup ViT table)"

    def __init__(self, alpha: float = 1.0, p: float = 1.0, mode: str = "batch", label_smoothing: float = 0.0):
        super().__init__(label_smoothing=label_smoothing)
        check_mix_args(alpha, p, mode)
        self.alpha, self.p, self.mode = alpha, p, mode

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        lam = draw_lam(self.alpha, self.p, self.mode, batch_size, gen)
        return {"lam": lam, "index": random_permutation(batch_size, gen)}

    def mix(self, x: Tensor, y: Tensor, lam: Tensor, index: Tensor) -> MixedBatch:
        index = index.to(x.device)
        if lam.dim() == 0:
            w = float(lam)  # a Python scalar: the same arithmetic as the reference
            mixed = w * x + (1 - w) * x[index]
        else:
            w = lam.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))
            mixed = w * x + (1 - w) * x[index]
        return MixedBatch(x=mixed, y_a=y, y_b=y[index.to(y.device)], lam=lam)

    def hparams(self) -> dict:
        return {"alpha": self.alpha, "p": self.p, "mode": self.mode, "label_smoothing": self.label_smoothing}
