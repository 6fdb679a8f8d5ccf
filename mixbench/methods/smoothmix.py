"""SmoothMix (Lee et al., "SmoothMix: a Simple Yet Effective Data Augmentation to Train Robust Classifiers",
CVPR Workshops 2020): a Gaussian blob of the partner blended into the image with soft edges.

Matches openmixup's `augments/smoothmix.py` (the paper has no official code): one blob and one permutation
per batch. The blob's centre shift along each axis is int(k - S/2) for k ~ randint(S) (S = H or W), its width
σ = (u/4 + 1/4)·H for u ~ U[0, 1), and the blob is the reference's construction: a Gaussian
exp(-((x - m)² + (y - m)²) / 2σ²), m = (2S - 1)/2, on a 2S×2S grid of coordinates rolled by the shifts and
cropped to its central S×S. The partner's weight is the blob K, x' = (1 - K)·x + K·x[π].

λ, the weight of y in the loss λ·CE(y) + (1-λ)·CE(y[π]):
* default (the paper's definition): λ = mean(1 - K), the share of the image that is still x.
* `openmixup_lam=True`: λ = mean(K), what openmixup returns as the weight of y, although K is the weight of
  the partner: its labels are swapped with respect to its images. openmixup's published SmoothMix numbers
  were made this way (the paper suites set it to compare with them).
openmixup also draws a λ ~ Beta(α, α) and then overwrites it: its α has no effect, so there is none here.

Deliberate differences from the reference:
* Non-square and odd-sized images: the reference builds an H×H blob (square, even-sized images only); here the
  rows use H and the columns W, with σ from H as the reference.
* `mode="elem"` (one blob per sample) and `p` (probability of mixing) are additions. The blob is computed in
  float64 (the reference's σ is float32). The caller's tensor is never written to; every draw comes from the
  trial's generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.methods._masking import draw_apply, draw_count
from mixbench.methods.base import InputMixer, MixedBatch, check_p_mode, random_permutation
from mixbench.methods.registry import register_method


def blob_offsets(center: Tensor, size: int) -> Tensor:
    """(n, size) coordinate minus the Gaussian's mean along one axis, for centre fractions `center` (n,).

    k = floor(u·S) is `randint(S)`; the shift is int(k - S/2) (truncated); rolling the 2S coordinates by it and
    cropping from S//2 gives coordinate (a + S//2 - shift) mod 2S at pixel a.
    """
    k = torch.floor(center.to(torch.float64) * size)
    shift = torch.trunc(k - size / 2).long()
    pixels = torch.arange(size, device=center.device)[None, :]
    coordinate = torch.remainder(pixels + size // 2 - shift[:, None], 2 * size)
    return coordinate.to(torch.float64) - (2 * size - 1) / 2


def gaussian_blobs(center: Tensor, sigma_u: Tensor, height: int, width: int) -> Tensor:
    """(n, H, W) blobs K in (0, 1]: the partner's weight, from centre fractions (n, 2) and σ draws (n,)."""
    dy = blob_offsets(center[:, 0], height)
    dx = blob_offsets(center[:, 1], width)
    sigma = (sigma_u.to(torch.float64) / 4 + 0.25) * height
    squared = dy[:, :, None] ** 2 + dx[:, None, :] ** 2
    return torch.exp(-squared / (2 * sigma[:, None, None] ** 2))


@register_method
class SmoothMix(InputMixer):
    name = "smoothmix"
    version = 1
    paper_name = "SmoothMix"
    display_order = 62
    cost_multiplier = 1.0
    cost_source = ("one H×W Gaussian per step; openmixup's CIFAR-100 ViT tables list SmoothMix at vanilla's memory "
                   "and hours (8.2 G / 27 h DeiT-S, 11.4 G / 36 h Swin-T)")
    eval_passes = 1

    def __init__(self, openmixup_lam: bool = False, p: float = 1.0, mode: str = "batch", label_smoothing: float = 0.0):
        super().__init__(label_smoothing=label_smoothing)
        check_p_mode(p, mode, unit="mask")
        self.openmixup_lam, self.p, self.mode = openmixup_lam, p, mode

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        n = draw_count(batch_size, self.mode)
        return {
            "center": torch.rand((n, 2), generator=gen, dtype=torch.float64),  # (row, column) fractions
            "sigma_u": torch.rand(n, generator=gen, dtype=torch.float64),
            "apply": draw_apply(self.p, n, gen),
            "index": random_permutation(batch_size, gen),
        }

    def mix(self, x: Tensor, y: Tensor, center: Tensor, sigma_u: Tensor, apply: Tensor, index: Tensor
            ) -> MixedBatch:
        height, width = x.shape[-2:]
        blobs = gaussian_blobs(center.to(x.device), sigma_u.to(x.device), height, width).unsqueeze(1)
        blobs = torch.where(apply.to(x.device).view(-1, 1, 1, 1), blobs, torch.zeros_like(blobs))
        partner_share = blobs.mean(dim=(1, 2, 3)).cpu()
        lam = partner_share if self.openmixup_lam else 1 - partner_share
        index = index.to(x.device)
        blob = blobs.to(x.dtype)
        mixed = x * (1 - blob) + x[index] * blob  # the reference's arithmetic
        keep = 1 - blob  # MixedBatch.mask: the weight of x
        if self.mode == "batch":
            lam, keep = lam[0], keep.expand(x.shape[0], -1, -1, -1)
        return MixedBatch(x=mixed, y_a=y, y_b=y[index.to(y.device)], lam=lam, mask=keep)
