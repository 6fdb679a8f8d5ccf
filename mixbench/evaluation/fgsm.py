"""FGSM (Goodfellow et al. 2015) in pixel space: x' = clip(x + ε · sign(∇ₓ loss), 0, 1).

The clean images are taken to [0, 1] pixels, the gradient of the cross-entropy is taken with respect to those
pixels (through the normalisation), the step is made and clipped there, and the result is normalised again
for the model. ε = 8/255 is openmixup's calibration_fgsm.py and the AutoMix paper's setting. The model is in
eval mode and its parameters get no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mixbench.data.device_augment import DeviceAugment
from mixbench.evaluation.pixels import normalise

EPSILON = 8 / 255


def fgsm_pixels(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, augment: DeviceAugment,
                epsilon: float = EPSILON) -> torch.Tensor:
    """The adversarial pixels of a batch (N,C,H,W in [0, 1]); the caller's tensor is not modified."""
    x = pixels.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(normalise(x, augment)).float(), labels)
        (grad,) = torch.autograd.grad(loss, x)
    return (x.detach() + epsilon * grad.sign()).clamp(0, 1)
