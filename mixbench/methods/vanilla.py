"""Vanilla: no mixing; plain cross-entropy on the clean batch. The baseline every method is compared to."""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.methods.base import InputMixer, MixedBatch
from mixbench.methods.registry import register_method


@register_method
class Vanilla(InputMixer):
    """The identity mixer: every sample is entirely itself (λ = 1)."""

    name = "vanilla"
    version = 1
    paper_name = "Vanilla"
    display_order = 0
    cost_multiplier = 1.0
    cost_source = "one forward + backward"

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        return {}

    def mix(self, x: Tensor, y: Tensor) -> MixedBatch:
        return MixedBatch(x=x, y_a=y, y_b=y, lam=torch.ones((), dtype=torch.float64))
