"""The 15 common corruptions of Hendrycks & Dietterich (ICLR 2019) at the parameters of CIFAR-10-C,
Tiny-ImageNet-C and ImageNet-C, in numpy.

Protocols. Hendrycks wrote one script per image size, in github.com/hendrycks/robustness (ImageNet-C/create_c/):
the same 15 definitions, with parameters (noise strength, blur radii, fog amount, JPEG quality, ...) chosen for
that size. mixbench keeps one table per script (severity 1-5 -> the parameters of each corruption) and picks the
table by the size of the images it corrupts (`protocol_for`, on the longest side):

* "cifar" (<= 32 px): `make_cifar_c.py`, the script that made CIFAR-10/100-C (the small-image protocol openmixup
  and the AutoMix paper use);
* "tiny_imagenet" (33-64 px): `make_tinyimagenet_c.py`, which made Tiny-ImageNet-C at 64 px;
* "imagenet" (> 64 px): `make_imagenet_c.py`, which made ImageNet-C at 224 px. ImageNet-C resizes each
  validation image to 256 px, centre-crops 224 px and corrupts that crop; mixbench corrupts the validation images
  as the trial evaluates them (an in-memory dataset at its own size, a file dataset through its eval transform at
  the trial's resolution), so a trial at 224 px sees ImageNet-C's inputs and one at 96 or 160 px sees the same
  corruptions on smaller images.

The parameters are in pixels and are used as the scripts give them, whatever the size within a protocol. Where a
script writes its image size as a literal, mixbench uses the image's own size: the fog fractal is made at the
next power of two (the scripts' 32, 64 and 256 for 32, 64 and 224 px), the glass-blur shuffle sweeps the whole
image, the snow layer and zoom blur take the image's shape, pixelate shrinks the image's own size, and frost
crops a patch of the image's size from the frost photograph at the scale the script reads it (0.2 for CIFAR,
0.3 for Tiny-ImageNet, 1 for ImageNet: the crystals keep their size in pixels). Elastic transform's parameters
are multiples of the script's IMSIZE (32, 64, and 244 in make_imagenet_c.py, where the script notes 224 was
meant), kept as the pixel values they give.

Library calls. No maintained package runs these definitions on current libraries: `imagecorruptions` 1.1.2
(bethgelab, the usual choice) fails to import with setuptools >= 81 (`pkg_resources`), breaks on numpy 2
(`np.float_`, fog) and scikit-image >= 0.19 (`multichannel`, glass blur), refuses images under 32 px
(Fashion-MNIST is 28 px) and implements ImageNet-C's parameters only (its defocus blur alone would erase a 32 px
image); its maintained fork `imagecorruptions-imaug` fixes the imports but keeps the last two limits and requires
opencv-python, which collides with the opencv-contrib-python-headless of the `saliency` extra. So mixbench
re-implements the definitions, one function per corruption below, with the library calls of the scripts (the
same in all three) replaced by their equivalents:

* skimage.filters.gaussian -> scipy.ndimage.gaussian_filter (skimage's defaults: mode "nearest", truncate 4);
* skimage.util.random_noise(mode="s&p") -> its definition: each value flipped with p = amount, to 1 or 0
  with p = 1/2;
* skimage.color.rgb2hsv / hsv2rgb -> matplotlib.colors.rgb_to_hsv / hsv_to_rgb (the same hexcone model);
* cv2.filter2D / cv2.GaussianBlur (defocus) -> scipy.ndimage.correlate with mode "mirror" (OpenCV's default
  border, BORDER_REFLECT_101) and the 3- or 5-tap Gaussian cv2.getGaussianKernel computes;
* cv2.warpAffine + getAffineTransform (elastic) -> the affine solved with numpy, applied by
  scipy.ndimage.affine_transform (bilinear, mode "mirror"); OpenCV rounds coordinates to 1/32 px, scipy not;
* cv2.cvtColor(RGB2GRAY) (snow) -> 0.299 R + 0.587 G + 0.114 B, OpenCV's weights;
* Wand/ImageMagick MotionBlurImage (motion blur, snow) -> ImageMagick's algorithm written out: a one-sided
  Gaussian kernel of width 2·ceil(radius)+1 along the angle, offsets ceil(i·cos/sin − 0.5), edge pixels
  repeated (ImageMagick's default virtual pixels), rounded to 8 bits as its PNG round trip does;
* cv2.resize(fx=0.2 or 0.3) (frost) -> torch bilinear interpolation on OpenCV's sampling grid (no antialiasing;
  the output sizes of the six photographs round the same way);
* the glass-blur pixel loop -> the same sweep as array operations (`glass_shuffle`; the test checks it against
  the loop);
* PIL (pixelate, JPEG) -> PIL, unchanged.

Frost overlays photographs of frost: the six files Hendrycks ships, found in an installed `imagecorruptions`
(or `imagecorruptions-imaug`, `corrupt-tta`) wheel, which mixbench only reads files from (install one with
`pip install --no-deps imagecorruptions`), or in the folder MIXBENCH_FROST_DIR names. The smallest of them is
315 px high, so frost refuses images above `frost_max_size` (314 px under the ImageNet protocol).

Grey images are corrupted as RGB images with three equal channels, and the first channel is kept.

Randomness: every image draws from its own numpy Generator, seeded from (seed, corruption, severity, index),
so a corrupted set is the same whatever the order, batching or process that makes it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import math
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

# Bumped whenever a definition changes the images it makes for a fixed seed (the disk cache is keyed on it).
VERSION = 1

CORRUPTIONS: dict[str, Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]] = {}
FAMILIES = {"noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
            "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
            "weather": ("snow", "frost", "fog"),
            "digital": ("brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")}
SEVERITIES = (1, 2, 3, 4, 5)


def register(fn: Callable) -> Callable:
    CORRUPTIONS[fn.__name__] = fn
    return fn


# ---- the protocols: per corruption, the parameters of severities 1-5 as each script writes them ------------------


def in_pixels(imsize: int, rows: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Elastic transform's (alpha, sigma, jitter), which the scripts write as multiples of their IMSIZE."""
    return [(imsize * alpha, imsize * sigma, imsize * jitter) for alpha, sigma, jitter in rows]


# zoom_blur: (stop, step) of the zoom factors np.arange(1, stop, step); frost: (keep, amount, photograph scale);
# snow: (loc, scale, zoom, threshold, blur radius, blur sigma, keep); glass_blur: (sigma, max delta, iterations).
CIFAR_C = {  # make_cifar_c.py, for 32 px
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": [(1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)],
    "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
    "frost": [(1, 0.2, 0.2), (1, 0.3, 0.2), (0.9, 0.4, 0.2), (0.85, 0.4, 0.2), (0.75, 0.45, 0.2)],
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "elastic_transform": in_pixels(32, [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                                        (0.1, 0.03, 0.03)]),
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
}
TINY_IMAGENET_C = {  # make_tinyimagenet_c.py, for 64 px
    "gaussian_noise": [0.04, 0.08, 0.12, 0.15, 0.18],
    "shot_noise": [250, 100, 50, 30, 15],
    "impulse_noise": [0.01, 0.02, 0.05, 0.08, 0.14],
    "defocus_blur": [(0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)],
    "glass_blur": [(0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)],
    "motion_blur": [(10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)],
    "zoom_blur": [(1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)],
    "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)],
    "frost": [(1, 0.3, 0.3), (0.9, 0.4, 0.3), (0.8, 0.45, 0.3), (0.75, 0.5, 0.3), (0.7, 0.55, 0.3)],
    "fog": [(0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)],
    "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],
    "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],
    "elastic_transform": in_pixels(64, [(0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06), (0.1, 0.03, 0.03),
                                        (0.16, 0.03, 0.02)]),
    "pixelate": [0.9, 0.8, 0.7, 0.6, 0.5],
    "jpeg_compression": [65, 58, 50, 40, 25],
}
IMAGENET_C = {  # make_imagenet_c.py, for 224 px
    "gaussian_noise": [0.08, 0.12, 0.18, 0.26, 0.38],
    "shot_noise": [60, 25, 12, 5, 3],
    "impulse_noise": [0.03, 0.06, 0.09, 0.17, 0.27],
    "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    "glass_blur": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
    "zoom_blur": [(1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)],
    "snow": [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
             (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)],
    "frost": [(1, 0.4, 1), (0.8, 0.6, 1), (0.7, 0.7, 1), (0.65, 0.7, 1), (0.6, 0.75, 1)],
    "fog": [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],
    "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],
    "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],
    "elastic_transform": in_pixels(244, [(2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02),
                                         (0.12, 0.01, 0.02)]),
    "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],
    "jpeg_compression": [25, 18, 15, 10, 7],
}
PROTOCOLS = {"cifar": CIFAR_C, "tiny_imagenet": TINY_IMAGENET_C, "imagenet": IMAGENET_C}


def protocol_for(size: int) -> str:
    """The protocol for images whose longest side is `size` px: the script made for the nearest size above."""
    return "cifar" if size <= 32 else "tiny_imagenet" if size <= 64 else "imagenet"


def parameters(protocol: str, name: str, severity: int) -> Any:
    return PROTOCOLS[protocol][name][severity - 1]


def version_tag(protocol: str) -> str:
    """What the cached sets' file names and the robustness records' keys carry: the definitions' VERSION and the
    protocol. CIFAR-C's is the bare version, as before the other protocols existed, so the sets and records made
    then stay valid; the others name their protocol, so no set is ever read under another protocol."""
    return f"v{VERSION}" if protocol == "cifar" else f"v{VERSION}-{protocol}"


# ---- helpers ------------------------------------------------------------------------------------------------


def gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """skimage.filters.gaussian of an H,W or H,W,C float image (channels not blurred into each other)."""
    sigmas = (sigma, sigma) + (0,) * (x.ndim - 2)
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def rgb2gray(x: np.ndarray) -> np.ndarray:
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    """The centre 1/zoom of `img` (H,W,C) zoomed back to H,W (bilinear), as make_cifar_c.py's helper."""
    h, w = img.shape[:2]
    ch, cw = math.ceil(h / zoom_factor), math.ceil(w / zoom_factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    img = ndimage.zoom(img[top:top + ch, left:left + cw], (zoom_factor, zoom_factor, 1), order=1)
    trim_top, trim_left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[trim_top:trim_top + h, trim_left:trim_left + w]


def disk(radius: float, alias_blur: float) -> np.ndarray:
    """The defocus kernel: a disk of `radius` on a 17×17 grid, smoothed by a 3×3 Gaussian (cv2.GaussianBlur)."""
    span = np.arange(-8, 9) if radius <= 8 else np.arange(-math.ceil(radius), math.ceil(radius) + 1)
    xx, yy = np.meshgrid(span, span)
    aliased = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    aliased /= aliased.sum()
    size = 3 if radius <= 8 else 5
    taps = np.exp(-((np.arange(size) - size // 2) ** 2) / (2 * alias_blur**2))
    taps /= taps.sum()
    return ndimage.correlate(aliased, np.outer(taps, taps), mode="mirror")


def motion_blur_kernel(radius: float, sigma: float, angle: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """ImageMagick's MotionBlurImage: the weights and the (row, column) offsets of the pixels it averages."""
    width = 2 * math.ceil(radius) + 1
    weights = np.exp(-(np.arange(width, dtype=np.float64) ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    px, py = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    norm = math.hypot(px, py)
    offsets = [(math.ceil(i * px / norm - 0.5), math.ceil(i * py / norm - 0.5)) for i in range(width)]
    return weights, offsets


def motion_blur_image(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """Motion blur of an H,W or H,W,C float image, edge pixels repeated past the border."""
    weights, offsets = motion_blur_kernel(radius, sigma, angle)
    h, w = x.shape[:2]
    rows, cols = np.arange(h), np.arange(w)
    out = np.zeros(x.shape, dtype=np.float64)
    for weight, (dy, dx) in zip(weights, offsets, strict=True):
        out += weight * x[np.clip(rows + dy, 0, h - 1)][:, np.clip(cols + dx, 0, w - 1)]
    return out


def plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """The diamond-square height map of the fog corruption, in [0, 1]; `mapsize` a power of two."""
    maparray = np.zeros((mapsize, mapsize), dtype=np.float64)
    stepsize, wibble = mapsize, 100.0

    def wibbledmean(array: np.ndarray) -> np.ndarray:
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        square = corners + np.roll(corners, shift=-1, axis=0)
        square += np.roll(square, shift=-1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(square)
        centres = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        top = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(top)
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(left)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
FROST_PACKAGES = (("imagecorruptions", "frost"), ("corrupt_tta", "assets/frost"))


def frost_dir() -> Path:
    """Where Hendrycks' frost photographs are: MIXBENCH_FROST_DIR, or an installed package that ships them
    (found without importing it: `imagecorruptions` 1.1.2 does not import on current setuptools)."""
    candidates = [Path(os.environ["MIXBENCH_FROST_DIR"])] if os.environ.get("MIXBENCH_FROST_DIR") else []
    for package, sub in FROST_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            candidates += [Path(loc) / sub for loc in spec.submodule_search_locations]
    for folder in candidates:
        if all((folder / name).is_file() for name in FROST_FILES[:5]):
            return folder
    raise FileNotFoundError(
        "corruption frost needs Hendrycks' frost photographs (frost1.png ... frost5.jpg); fix: `pip install "
        "--no-deps imagecorruptions` (mixbench only reads its files), or set MIXBENCH_FROST_DIR to a folder "
        "holding them, or leave frost out of evaluation.corruptions")


@cache
def frost_layer(index: int, scale: float) -> np.ndarray:
    """Frost photograph `index` (RGB uint8) scaled by `scale`, as the protocol's script reads it (cv2.resize)."""
    import torch
    import torch.nn.functional as F

    with Image.open(frost_dir() / FROST_FILES[index]) as img:
        rgb = np.asarray(img.convert("RGB"))
    if scale == 1:
        return rgb
    t = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None]
    small = F.interpolate(t, scale_factor=scale, mode="bilinear", align_corners=False, recompute_scale_factor=False)
    return small[0].permute(1, 2, 0).round().clamp(0, 255).numpy().astype(np.uint8)


def frost_fingerprint() -> str:
    """A hash of the frost files, for the cache key (another copy of them makes other images)."""
    digest = hashlib.sha256()
    for name in FROST_FILES[:5]:
        digest.update((frost_dir() / name).read_bytes())
    return digest.hexdigest()[:16]


# ---- the corruptions: x is an H,W,3 uint8 image, c the severity's parameters in the protocol's table; each -------
# ---- returns floats in [0, 255] (or uint8) -------------------------------------------------------------------


@register
def gaussian_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    x = x / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


@register
def shot_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    x = x / 255.0
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


@register
def impulse_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    x = x / 255.0
    flipped = rng.random(x.shape) < c
    salted = rng.random(x.shape) < 0.5
    return np.where(flipped, salted.astype(np.float64), x) * 255


@register
def defocus_blur(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    radius, alias_blur = c
    kernel = disk(radius, alias_blur)
    x = x / 255.0
    out = np.stack([ndimage.correlate(x[..., d], kernel, mode="mirror") for d in range(x.shape[2])], axis=2)
    return np.clip(out, 0, 1) * 255


def glass_shuffle(x: np.ndarray, delta: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """The scripts' "locally shuffle pixels" loop on an H,W,C image, as array operations.

    The loop visits (h, w) from the bottom-right corner backwards, row by row, and runs
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]` with (h', w') = (h + dy, w + dx), dx, dy drawn from [-delta, delta).
    That swaps numpy views: the second assignment reads the pixel the first one just overwrote, so each visit
    copies x[h', w'] into x[h, w] and changes nothing else; every pixel is written once per sweep, at its visit.
    A visit reads (h', w') as it was before the sweep unless the sweep has already been there (dy > 0, or dy = 0
    and dx > 0: only for delta >= 2), in which case it reads what that visit copied, and so on along the chain.
    So pixel p ends up holding the original pixel at the end of its chain, found for all pixels at once by
    pointer doubling."""
    h, w = x.shape[:2]
    rows, cols = np.arange(h - delta, delta, -1), np.arange(w - delta, delta, -1)
    visited = (rows[:, None] * w + cols[None, :]).ravel()  # flat indices, in visiting order
    order = np.full(h * w, len(visited))
    order[visited] = np.arange(len(visited))
    for _ in range(iterations):
        offsets = rng.integers(-delta, delta, size=(len(rows), len(cols), 2))  # (dx, dy) per visit, in sweep order
        read = ((rows[:, None] + offsets[..., 1]) * w + cols[None, :] + offsets[..., 0]).ravel()
        source, link = np.arange(h * w), np.arange(h * w)
        source[visited] = read
        already = order[read] < order[visited]  # the visit reads a pixel written earlier in this sweep
        link[visited[already]] = read[already]
        while not np.array_equal(jumped := link[link], link):
            link = jumped
        x = x.reshape(h * w, -1)[source[link]].reshape(x.shape)
    return x


@register
def glass_blur(x: np.ndarray, c: tuple[float, int, int], rng: np.random.Generator) -> np.ndarray:
    sigma, delta, iterations = c
    x = (gaussian(x / 255.0, sigma) * 255).astype(np.uint8)
    x = glass_shuffle(x, delta, iterations, rng)
    return np.clip(gaussian(x / 255.0, sigma), 0, 1) * 255


@register
def motion_blur(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    radius, sigma = c
    angle = rng.uniform(-45, 45)
    return np.clip(np.round(motion_blur_image(x.astype(np.float64), radius, sigma, angle)), 0, 255)


@register
def zoom_blur(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    factors = np.arange(1, *c)
    x = (x / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for zoom_factor in factors:
        out += clipped_zoom(x, zoom_factor)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


@register
def snow(x: np.ndarray, c: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    loc, scale, zoom, threshold, radius, sigma, keep = c
    x = x.astype(np.float32) / 255.0
    layer = rng.normal(size=x.shape[:2], loc=loc, scale=scale)
    layer = clipped_zoom(layer[..., None], zoom)
    layer[layer < threshold] = 0
    layer = (np.clip(layer.squeeze(-1), 0, 1) * 255).astype(np.uint8)  # the script's 8-bit PNG
    angle = rng.uniform(-135, -45)
    layer = np.clip(np.round(motion_blur_image(layer.astype(np.float64), radius, sigma, angle)), 0, 255) / 255.0
    layer = layer[..., None]
    x = keep * x + (1 - keep) * np.maximum(x, rgb2gray(x)[..., None] * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


def largest_frost_crop(scale: float) -> int:
    """The largest side of a crop that fits in each of the five photographs at `scale` (the script draws one)."""
    return min(min(frost_layer(i, scale).shape[:2]) for i in range(5)) - 1


def frost_max_size(protocol: str) -> int:
    """The largest side an image can have for frost under `protocol`."""
    return largest_frost_crop(PROTOCOLS[protocol]["frost"][0][2])


@register
def frost(x: np.ndarray, c: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    keep, amount, scale = c
    h, w = x.shape[:2]
    if max(h, w) > largest_frost_crop(scale):  # refused whichever photograph the image would draw
        raise ValueError(f"corruption frost: images of {h}×{w} px are larger than Hendrycks' frost photographs "
                         f"(at most {largest_frost_crop(scale)} px at scale {scale:g}); fix: leave frost out of "
                         f"evaluation.corruptions")
    layer = frost_layer(int(rng.integers(5)), scale)  # the script draws among the first five photographs
    top, left = rng.integers(0, layer.shape[0] - h), rng.integers(0, layer.shape[1] - w)
    return np.clip(keep * x.astype(np.float64) + amount * layer[top:top + h, left:left + w], 0, 255)


@register
def fog(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    amount, decay = c
    h, w = x.shape[:2]
    x = x / 255.0
    max_val = x.max()
    mapsize = 1 << (max(h, w) - 1).bit_length()  # the scripts' 32, 64, 256: the next power of two
    x = x + amount * plasma_fractal(mapsize, decay, rng)[:h, :w][..., None]
    return np.clip(x * max_val / (max_val + amount), 0, 1) * 255


@register
def brightness(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(x / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


@register
def contrast(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 affine mapping three (x, y) points `src` onto `dst` (cv2.getAffineTransform)."""
    design = np.hstack([src.astype(np.float64), np.ones((3, 1))])
    return np.linalg.solve(design, dst.astype(np.float64)).T


@register
def elastic_transform(x: np.ndarray, c: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    alpha, sigma, jitter = c  # in pixels (the script's multiples of its IMSIZE)
    image = x.astype(np.float32) / 255.0
    h, w, channels = image.shape
    # A random affine: three points around the centre (x, y order as OpenCV's) each moved by up to `jitter`.
    centre = np.float32([h, w]) // 2
    square = min(h, w) // 3
    src = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    dst = src + rng.uniform(-jitter, jitter, size=src.shape).astype(np.float32)
    forward = np.vstack([affine_from_points(src, dst), [0, 0, 1]])
    inverse = np.linalg.inv(forward)  # warpAffine samples the source at M⁻¹ · (x, y)
    matrix = np.array([[inverse[1, 1], inverse[1, 0]], [inverse[0, 1], inverse[0, 0]]])  # in (row, col) order
    offset = np.array([inverse[1, 2], inverse[0, 2]])
    image = np.stack([ndimage.affine_transform(image[..., d], matrix, offset, order=1, mode="mirror")
                      for d in range(channels)], axis=2)
    # Then a smooth random displacement field.
    dx = (gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    dy = (gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    cols, rows, chans = np.meshgrid(np.arange(w), np.arange(h), np.arange(channels))
    coordinates = [(rows + dy[..., None]).ravel(), (cols + dx[..., None]).ravel(), chans.ravel()]
    out = ndimage.map_coordinates(image, coordinates, order=1, mode="reflect").reshape(image.shape)
    return np.clip(out, 0, 1) * 255


@register
def pixelate(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    img = Image.fromarray(x).resize((int(w * c), int(h * c)), Image.Resampling.BOX)
    return np.asarray(img.resize((w, h), Image.Resampling.BOX))


@register
def jpeg_compression(x: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, "JPEG", quality=c)
    with Image.open(buffer) as img:
        return np.asarray(img.convert("RGB"))


# ---- applying them -------------------------------------------------------------------------------------------


def image_seed(seed: int, name: str, severity: int) -> int:
    digest = hashlib.blake2b(f"mixbench-corruption:{seed}:{name}:{severity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def corrupt(images: np.ndarray, name: str, severity: int, seed: int, start: int = 0) -> np.ndarray:
    """`images` (N,C,H,W uint8, C 1 or 3) under corruption `name` at `severity`, with the parameters of the
    protocol for their size; image i draws from its own generator seeded by (seed, name, severity, start + i).
    Returns a new N,C,H,W uint8 array."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"corruption severity {severity} is outside 1-5")
    n, channels, h, w = images.shape
    fn, c = CORRUPTIONS[name], parameters(protocol_for(max(h, w)), name, severity)
    base = image_seed(seed, name, severity)
    out = np.empty_like(images)
    for i in range(n):
        rgb = np.ascontiguousarray(np.broadcast_to(images[i].transpose(1, 2, 0), (h, w, 3)))
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([base, start + i])))
        corrupted = np.asarray(fn(rgb, c, rng))
        # The scripts store np.uint8(values): truncation, not rounding.
        out[i] = corrupted[..., :channels].transpose(2, 0, 1).astype(np.uint8)
    return out
