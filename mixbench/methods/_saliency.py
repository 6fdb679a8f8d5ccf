"""OpenCV's static fine-grained saliency (Montabone & Soto, 2010), ported to batched torch, plus the OpenCV call.

SaliencyMix places its box on the peak of `cv2.saliency.StaticSaliencyFineGrained` (opencv-contrib). This module
reproduces what that detector *actually outputs* - established by experiment against opencv-contrib 5.0.0, not
only from the paper - so the port picks the same peak as the reference while running on the batch's device:

1. Grey image. A 3-channel array is read as BGR (an RGB tensor's channel 0 is taken as blue) and converted by
   `cvtColor(BGR2GRAY)`. For float32 OpenCV computes `fma(R, 0.299f, fma(B, 0.114f, G * 0.587f))`; for uint8
   it uses 15-bit fixed point `(3735 B + 19235 G + 9798 R + 2^14) >> 15`. A 1-channel array is used as is.
2. Two 3×3 Gaussian blurs (kernel 1/4, 1/2, 1/4; border reflect-101). float32: the row pass then the column
   pass, each `x/2 + (left + right)/4`; uint8: the bit-exact fixed-point path, `(Σ w·x + 8) >> 4`.
3. The float32 integral image of the blurred grey image.
4. Centre-surround at six neighbourhoods (12, 24, 48, 28, 56, 112 px): for each pixel, the surround mean is
   `(box sum - centre) / (box area - 1)` over the box [y-n+1, y+n+1) × [x-n+1, x+n+1) clipped to the image
   (so it shrinks at borders); on = centre - mean and off = mean - centre, each truncated to uchar (with
   C's wrap-around) where positive and summed over the scales.
5. on and off are each rescaled to 0..255 by their own maximum, then summed and rescaled by the larger of
   the two maxima; the output is that 8-bit map k times float32(1/255), and the reference's
   `(sal * 255).astype(uint8)` gives k back exactly (checked for all 256 values).

The surprise is the *centre* value. OpenCV reads it as `gray.at<uchar>(y, x)` even when the grey image is
float32, so for the float input the reference feeds (the normalised float32 HWC array), the centre of pixel
(y, x) is byte x of row y's float32 data: the raw bytes of the first quarter of each row, spread over the whole
width. The integral and the surround means are real float values. That is why a uint8 image and the
normalised float image give different peaks (REFERENCE.md §4), and the port reproduces it byte for byte by
viewing the float32 grey image as uint8 (native byte order, the same memory OpenCV reads).

Exactness: a numpy emulation of these steps that used OpenCV's own integral image reproduced every map bit for
bit at 28/32/64/224 px (float and uint8, 1 and 3 channels, random and Fashion-MNIST images; opencv-contrib
5.0.0, x86-64). The torch port builds the integral with
a float64 cumulative sum rounded to float32 - OpenCV's SIMD float32 prefix sum rounds differently - which moves
a surround mean by an ulp and, very rarely, one pixel's truncation; measured agreement is in
tests/test_saliencymix.py. The grey conversion emulates the fused multiply-add through float64 (exact product,
one extra rounding that differs from a true FMA only on exact float32 ties). The float32 byte patterns are
those of an x86-64 build with FMA (the OpenCV wheels' runtime dispatch); a build without FMA rounds the grey
image differently and so would read different bytes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# Neighbourhood half-sizes of OpenCV's `calcIntensityChannel`, in its order.
NEIGHBORHOODS = (12, 24, 48, 28, 56, 112)
# cvtColor BGR2GRAY coefficients as OpenCV stores them: float32 values, and the 15-bit fixed-point ones for uint8.
_GRAY_B, _GRAY_G, _GRAY_R = (float(np.float32(c)) for c in (0.114, 0.587, 0.299))
_GRAY_FIXED_B, _GRAY_FIXED_G, _GRAY_FIXED_R, _GRAY_SHIFT = 3735, 19235, 9798, 15

OPENCV_EXTRA_HINT = "pip install 'mixbench[saliency]' (opencv-contrib-python-headless; not plain opencv-python)"


def require_cv2():
    """Import OpenCV with its contrib `saliency` module, or fail saying which extra to install."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError(f"SaliencyMix's OpenCV back end needs OpenCV with the contrib modules: {OPENCV_EXTRA_HINT}"
                          ) from err
    if not hasattr(cv2, "saliency"):
        raise ImportError(f"the installed OpenCV ({cv2.__version__}) has no contrib `saliency` module: "
                          f"{OPENCV_EXTRA_HINT}; uninstall opencv-python first, the two builds conflict")
    return cv2


def _fma_f32(a: Tensor, b: float, c: Tensor) -> Tensor:
    """float32 fused multiply-add a*b + c: the product is exact in float64, so one rounding is left (see docstring)."""
    return (a.double() * b + c.double()).float()


def _gray(images: Tensor) -> Tensor:
    """(N, C, H, W) with C in {1, 3} -> (N, H, W) grey image, float32 or int32 (uint8 values) as OpenCV computes it."""
    if images.shape[1] == 1:
        return images[:, 0].float() if images.is_floating_point() else images[:, 0].int()
    blue, green, red = images[:, 0], images[:, 1], images[:, 2]
    if images.is_floating_point():
        blue, green, red = blue.float(), green.float(), red.float()
        return _fma_f32(red, _GRAY_R, _fma_f32(blue, _GRAY_B, green * _GRAY_G))
    blue, green, red = blue.int(), green.int(), red.int()
    fixed = blue * _GRAY_FIXED_B + green * _GRAY_FIXED_G + red * _GRAY_FIXED_R + (1 << (_GRAY_SHIFT - 1))
    return fixed >> _GRAY_SHIFT


def _blur3(gray: Tensor) -> Tensor:
    """OpenCV's GaussianBlur(3×3, sigma 0), reflect-101 border; float32 or the uint8 fixed-point path (int32)."""
    if gray.is_floating_point():
        padded = F.pad(gray[:, None], (1, 1, 1, 1), mode="reflect")[:, 0]
        rows = padded[:, :, 1:-1] * 0.5 + (padded[:, :, :-2] + padded[:, :, 2:]) * 0.25
        return rows[:, 1:-1] * 0.5 + (rows[:, :-2] + rows[:, 2:]) * 0.25
    # int pads go through float (reflect is not implemented for ints); values < 256 are exact.
    padded = F.pad(gray[:, None].float(), (1, 1, 1, 1), mode="reflect")[:, 0].int()
    rows = padded[:, :, :-2] + 2 * padded[:, :, 1:-1] + padded[:, :, 2:]
    return (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:] + 8) >> 4


def _as_uchar(values: Tensor) -> Tensor:
    """C's `(uchar)` of a positive float: truncate to int, keep the low byte."""
    return values.to(torch.int32) & 255


def _rescale_to_255(values: Tensor) -> Tensor:
    """`(uchar)(255. * (float)(v / (float)max))` per image; a 0 maximum (0/0 in OpenCV) gives 0."""
    peak = values.amax(dim=(1, 2), keepdim=True)
    ratio = values.float() / peak.float().clamp_min(1)
    return torch.where(peak > 0, _as_uchar(255.0 * ratio.double()), 0)


def fine_grained_saliency(images: Tensor) -> Tensor:
    """The 8-bit static fine-grained saliency maps of a batch, on the batch's device.

    `images`: (N, C, H, W), C in {1, 3}, float (converted to float32, as the reference's `.float()`) or uint8,
    channel 0 read as blue like OpenCV reads an RGB array. Returns (N, H, W) uint8 equal to OpenCV's
    `(computeSaliency(img)[1] * 255).astype(uint8)` for `img = image.numpy().transpose(1, 2, 0)`.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"fine-grained saliency takes (N, C, H, W) images with C = 1 or 3; got {tuple(images.shape)}")
    n, _, height, width = images.shape
    if height < 2 or width < 2:
        raise ValueError(f"fine-grained saliency needs images of at least 2×2 px; got {height}×{width}")
    # Exact float arithmetic matters here (bytes of float32 values are read), so never under autocast.
    with torch.autocast(images.device.type, enabled=False):
        gray = _blur3(_blur3(_gray(images)))
        if gray.is_floating_point():
            # OpenCV's gray.at<uchar>(y, x) on a float32 image: byte x of row y's float32 data.
            gray = gray.contiguous()
            center = gray.view(torch.uint8).view(n, height, 4 * width)[:, :, :width].float()
        else:
            center = gray.float()
            gray = center
        integral = F.pad(gray.double().cumsum(2).cumsum(1), (1, 0, 1, 0)).float()  # (N, H+1, W+1)

        device = images.device
        ys = torch.arange(height, device=device)
        xs = torch.arange(width, device=device)
        on = torch.zeros((n, height, width), dtype=torch.int32, device=device)
        off = torch.zeros_like(on)
        for hood in NEIGHBORHOODS:
            top, bottom = (ys - hood + 1).clamp(0, height), (ys + hood + 1).clamp(0, height)
            left, right = (xs - hood + 1).clamp(0, width), (xs + hood + 1).clamp(0, width)
            upper_rows = integral.index_select(1, top)
            lower_rows = integral.index_select(1, bottom)
            # (P2 + P1) - (P2.y, P1.x) - (P1.y, P2.x), in OpenCV's order of float additions.
            box = (lower_rows.index_select(2, right) + upper_rows.index_select(2, left)
                   - lower_rows.index_select(2, left) - upper_rows.index_select(2, right))
            area = ((bottom - top)[:, None] * (right - left)[None, :] - 1).float()
            surround = (box - center) / area
            on_value, off_value = center - surround, surround - center
            # Only positive differences count; below 1 they truncate to 0 anyway, so clamping is the same.
            on += _as_uchar(on_value.clamp_min(0))
            off += _as_uchar(off_value.clamp_min(0))
        on8, off8 = _rescale_to_255(on), _rescale_to_255(off)
        top_value = torch.maximum(on8.amax(dim=(1, 2), keepdim=True), off8.amax(dim=(1, 2), keepdim=True))
        mixed = 255.0 * (on8 + off8).double() / top_value.double().clamp_min(1)
        return torch.where(top_value > 0, _as_uchar(mixed), 0).to(torch.uint8)


def saliency_peaks(maps: Tensor) -> Tensor:
    """(N, H, W) maps -> (N, 2) int64 (row, col) of each map's first maximum in row-major order (numpy's argmax)."""
    n, height, width = maps.shape
    flat = maps.reshape(n, -1).long()
    # Score ties in favour of the earlier pixel, so the result does not depend on argmax's tie rule.
    position = torch.arange(height * width - 1, -1, -1, device=maps.device)
    best = (flat * (height * width) + position).argmax(dim=1)
    return torch.stack([best // width, best % width], dim=1)


def opencv_fine_grained_saliency(images: Tensor) -> Tensor:
    """The reference: OpenCV's detector, one image at a time on the CPU, fed exactly as openmixup feeds it.

    Each image goes in as `image.float().cpu().numpy().transpose(1, 2, 0)` (uint8 images stay uint8).
    Returns (N, H, W) uint8 `(saliency * 255).astype(uint8)` on the images' device.
    """
    cv2 = require_cv2()
    detector = cv2.saliency.StaticSaliencyFineGrained_create()
    maps = []
    for image in images:
        array = (image if image.dtype == torch.uint8 else image.float()).cpu().numpy().transpose(1, 2, 0)
        ok, saliency = detector.computeSaliency(array)
        if not ok:
            raise RuntimeError("cv2 StaticSaliencyFineGrained.computeSaliency failed")
        maps.append(torch.from_numpy((saliency * 255).astype(np.uint8)))
    return torch.stack(maps).to(images.device)
