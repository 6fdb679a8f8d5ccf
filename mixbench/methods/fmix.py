"""FMix (Harris et al., "FMix: Enhancing Mixed Sample Data Augmentation", arXiv 2002.12047, 2020).

A mask from low-frequency Fourier noise: a complex spectrum of Gaussian noise scaled by 1/f^decay_power is
inverted to an image, which is thresholded so that its top ⌈λ·HW⌉ or ⌊λ·HW⌋ pixels (a fair coin chooses) keep
the first image and the rest show the partner; λ ~ Beta(α, α), or Beta(α+1, α) with `reformulate`.
`max_soft` > 0 replaces the hard edge by a linear ramp over 2·⌊HW·soft⌋ ranks. Matches the official code
(ecs-vlc/FMix `fmix.py`) and openmixup's copy (`augments/fmix.py`, whose defaults are decay_power 3, max_soft 0,
reformulate False): one mask and one permutation per batch, x' = mask·x + (1-mask)·x[π].

Deliberate differences from the reference:
* The spectrum. The reference builds its complex spectrum as `spectrum[:, 0] + 1j * spectrum[:, 1]`, which
  indexes the frequency-row axis rather than the last (real/imaginary) one: only the noise of the first two
  frequency rows is used, laid out along the image's height, and along the width only frequencies 0 and 1
  survive (masks vary slowly across the width, faster down the height). The published numbers were made with
  it, so `spectrum="reference"` (default) reproduces it exactly; `spectrum="paper"` uses the full isotropic
  spectrum the paper describes.
* λ for the labels is the realised mask mean (with max_soft 0 exactly the kept-pixel share, num/HW), not the
  drawn λ the reference returns; the two differ by less than one pixel's share.
* The mask has the batch's own H×W (openmixup takes a `size` argument, set to the image size in every
  config); 1-D and 3-D masks are not ported.
* `mode="elem"` (one mask per sample) and `p` (probability of mixing) are additions, as for Mixup/CutMix.
  openmixup retries the permutation up to 10 times to avoid fixed points; a plain permutation is used here,
  as mixbench's CutMix does. The caller's tensor is never written to; every draw comes from the trial's
  generator.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mixbench.methods._masking import draw_apply, draw_count, mix_with_masks
from mixbench.methods.base import InputMixer, MixedBatch, check_mix_args, random_permutation
from mixbench.methods.registry import register_method

SPECTRA = ("reference", "paper")


def sample_beta_ab(a: float, b: float, size: int, gen: torch.Generator) -> Tensor:
    """`size` float64 draws of Beta(a, b), controlled by `gen` (as `base.sample_beta`, asymmetric)."""
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=gen).item())
    return torch.from_numpy(np.random.default_rng(seed).beta(a, b, size=size))


def frequency_bins(height: int) -> Tensor:
    """`np.fft.fftfreq(height)` in float64."""
    return torch.fft.fftfreq(height, dtype=torch.float64)


def spectrum_width(width: int) -> int:
    """Columns of the reference's spectrum: W//2 + 1, and one more for odd W (its `fftfreqnd`)."""
    return width // 2 + 1 + width % 2


def frequency_magnitudes(height: int, width: int) -> Tensor:
    """(H, spectrum_width) radial frequencies √(fy² + fx²), fx the first spectrum_width bins of fftfreq(W)."""
    fy = frequency_bins(height)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64)[: spectrum_width(width)][None, :]
    return torch.sqrt(fx * fx + fy * fy)


def low_frequency_images(noise: Tensor, decay_power: float, height: int, width: int, spectrum: str) -> Tensor:
    """(n, H, W) images in [0, 1] from Gaussian `noise` (n, H, spectrum_width, 2) scaled by 1/f^decay_power."""
    freqs = frequency_magnitudes(height, width).to(noise.device)
    scale = 1.0 / torch.clamp(freqs, min=1.0 / max(height, width)) ** decay_power
    scaled = scale[None, :, :, None] * noise
    if spectrum == "reference":
        # The reference's indexing (module docstring): rows 0 and 1 become the real and imaginary parts,
        # an array (spectrum_width, 2) that irfftn pads or crops to the (H, W//2 + 1) half-spectrum.
        complex_spectrum = torch.complex(scaled[:, 0], scaled[:, 1])
    else:
        complex_spectrum = torch.complex(scaled[..., 0], scaled[..., 1])
    images = torch.fft.irfftn(complex_spectrum, s=(height, width), dim=(-2, -1))
    flat = images.reshape(images.shape[0], -1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / flat.max(dim=1, keepdim=True).values
    return flat.view(-1, height, width)


def binarise(images: Tensor, lam: Tensor, coin: Tensor, max_soft: float) -> Tensor:
    """The reference's `binarise_mask`, per image: (n, H, W) in [0, 1] -> (n, H, W) masks.

    Pixels ranked by decreasing value: the first num_low are 1, those from num_high on are 0, and the ranks
    between get the ramp linspace(1, 0, num_high - num_low); num = ⌈λ·HW⌉ if coin > 0.5 else ⌊λ·HW⌋ and the
    ramp half-width is ⌊HW·min(max_soft, λ, 1-λ)⌋ (the reference caps max_soft at min(λ, 1-λ)).
    """
    n, height, width = images.shape
    size = height * width
    device = images.device
    lam = lam.to(device=device, dtype=torch.float64)
    scaled = lam * size
    num = torch.where(coin.to(device) > 0.5, torch.ceil(scaled), torch.floor(scaled))
    soft_fraction = torch.where((max_soft > lam) | (max_soft > 1 - lam), torch.minimum(lam, 1 - lam),
                                torch.full_like(lam, max_soft))
    soft = torch.floor(size * soft_fraction)
    low, high = (num - soft)[:, None], (num + soft)[:, None]
    ranks = torch.arange(size, device=device, dtype=torch.float64)[None, :]
    ramp = 1.0 - (ranks - low) / (high - low - 1).clamp(min=1)  # linspace(1, 0, high - low) at rank - low
    values = torch.where(ranks < low, 1.0, torch.where(ranks < high, ramp, 0.0))
    order = torch.argsort(images.reshape(n, size), dim=1, descending=True)
    return torch.zeros_like(values).scatter_(1, order, values).view(n, height, width)


@register_method
class FMix(InputMixer):
    name = "fmix"
    version = 1
    paper_name = "FMix"
    display_order = 64
    cost_multiplier = 1.0
    cost_source = ("an irfft and a sort per mask; openmixup's CIFAR-100 ViT tables list FMix at vanilla's memory "
                   "and hours (8.2 G / 27 h DeiT-S, 11.4 G / 36 h Swin-T)")
    eval_passes = 1

    def __init__(
        self,
        alpha: float = 1.0,
        decay_power: float = 3.0,
        max_soft: float = 0.0,
        reformulate: bool = False,
        spectrum: str = "reference",
        p: float = 1.0,
        mode: str = "batch",
        label_smoothing: float = 0.0,
    ):
        super().__init__(label_smoothing=label_smoothing)
        check_mix_args(alpha, p, mode, unit="mask")
        if decay_power <= 0:
            raise ValueError(f"decay_power must be > 0 (the spectrum decays as 1/f^decay_power); got {decay_power}")
        if not 0.0 <= max_soft <= 0.5:
            raise ValueError(f"max_soft must be in [0, 0.5] (0: hard mask edges); got {max_soft}")
        if spectrum not in SPECTRA:
            raise ValueError(
                f"spectrum must be 'reference' (the official code's, which the published numbers used) or 'paper' "
                f"(the full isotropic spectrum); got {spectrum!r}"
            )
        self.alpha, self.decay_power, self.max_soft = alpha, decay_power, max_soft
        self.reformulate, self.spectrum, self.p, self.mode = reformulate, spectrum, p, mode

    def check_input(self, image_size: tuple[int, int], backbone_name: str) -> None:
        height, width = image_size
        if height < 2 or width < 2:
            raise ValueError(f"FMix needs images of at least 2×2 px for its Fourier masks; got {height}×{width}")

    def sample(self, batch_size: int, gen: torch.Generator) -> dict[str, Tensor]:
        n = draw_count(batch_size, self.mode)
        a = self.alpha + 1 if self.reformulate else self.alpha
        return {
            "lam": sample_beta_ab(a, self.alpha, n, gen),
            "coin": torch.rand(n, generator=gen, dtype=torch.float64),
            # Unit Gaussians; their shape depends on the image size, so they are drawn as a seed here and
            # expanded in `noise_for` (a pure function of the draw).
            "noise_seed": torch.randint(0, 2**63 - 1, (n,), generator=gen),
            "apply": draw_apply(self.p, n, gen),
            "index": random_permutation(batch_size, gen),
        }

    @staticmethod
    def noise_for(noise_seed: Tensor, height: int, width: int) -> Tensor:
        """(n, H, spectrum_width, 2) standard normals, one seeded CPU generator per mask."""
        shape = (height, spectrum_width(width), 2)
        return torch.stack([
            torch.randn(shape, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64)
            for s in noise_seed
        ])

    def masks(self, lam: Tensor, coin: Tensor, noise: Tensor, height: int, width: int) -> Tensor:
        """(n, 1, H, W) masks, the weight of the first image, from the drawn λ, coin and noise."""
        images = low_frequency_images(noise, self.decay_power, height, width, self.spectrum)
        return binarise(images, lam, coin, self.max_soft).unsqueeze(1)

    def mix(self, x: Tensor, y: Tensor, lam: Tensor, coin: Tensor, noise_seed: Tensor, apply: Tensor,
            index: Tensor, noise: Tensor | None = None) -> MixedBatch:
        height, width = x.shape[-2:]
        if noise is None:
            noise = self.noise_for(noise_seed, height, width)
        keep = self.masks(lam, coin, noise.to(x.device), height, width)
        return mix_with_masks(x, y, index, keep, apply, self.mode)
