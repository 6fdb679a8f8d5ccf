"""Each corruption under each protocol against its definition (make_cifar_c.py, make_tinyimagenet_c.py,
make_imagenet_c.py of hendrycks/robustness), and the cached sets."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mixbench.evaluation import corruptions as C
from mixbench.evaluation.corrupted_sets import CorruptedSets


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def constant(value: int, size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def noise_image(seed: int = 0, size: int = 32) -> np.ndarray:
    return rng(seed).integers(0, 256, (size, size, 3)).astype(np.uint8)


def by_protocol(cifar, tiny_imagenet, imagenet) -> list:
    """pytest params (protocol, the script's values for severities 1-5): make_cifar_c.py, make_tinyimagenet_c.py,
    make_imagenet_c.py of hendrycks/robustness."""
    return [pytest.param("cifar", cifar, id="cifar"), pytest.param("tiny_imagenet", tiny_imagenet, id="tiny"),
            pytest.param("imagenet", imagenet, id="imagenet")]


def severities(protocol: str, name: str, published: list) -> list[tuple[int, object]]:
    """(severity, its parameters), after checking the module's table holds the published values."""
    # pytest.approx's own tolerances, on arrays: pytest 9.2's approx refuses nested tuples (a row per severity)
    np.testing.assert_allclose(np.array(C.PROTOCOLS[protocol][name], dtype=float), np.array(published, dtype=float),
                               rtol=1e-6, atol=1e-12)
    return [(severity, C.parameters(protocol, name, severity)) for severity in C.SEVERITIES]


def test_the_protocol_follows_the_image_size():
    assert [C.protocol_for(size) for size in (16, 28, 32, 33, 64, 65, 96, 224)] == [
        "cifar", "cifar", "cifar", "tiny_imagenet", "tiny_imagenet", "imagenet", "imagenet", "imagenet"]
    assert set(C.PROTOCOLS) == {"cifar", "tiny_imagenet", "imagenet"}
    for table in C.PROTOCOLS.values():
        assert list(table) == list(C.CORRUPTIONS) and all(len(rows) == 5 for rows in table.values())
    # corrupt() applies the table of the images' size: contrast 0.75 (CIFAR), 0.4 (Tiny-ImageNet), 0.4 then 0.3
    for size, protocol in ((32, "cifar"), (48, "tiny_imagenet"), (80, "imagenet")):
        x = noise_image(1, size)
        for severity in (1, 2):
            expected = C.contrast(x, C.parameters(protocol, "contrast", severity), rng()).astype(np.uint8)
            assert np.array_equal(C.corrupt(x.transpose(2, 0, 1)[None], "contrast", severity, seed=0)[0],
                                  expected.transpose(2, 0, 1))


@pytest.mark.parametrize("protocol, published", by_protocol([0.04, 0.06, 0.08, 0.09, 0.10],
                                                             [0.04, 0.08, 0.12, 0.15, 0.18],
                                                             [0.08, 0.12, 0.18, 0.26, 0.38]))
def test_gaussian_noise_adds_noise_of_the_severitys_std(protocol, published):
    from scipy.stats import norm

    for _, c in severities(protocol, "gaussian_noise", published):
        out = C.gaussian_noise(constant(128, 128), c, rng())
        residual = out / 255 - 128 / 255
        # the share within one and within half a std: clipping to [0, 1] cannot move it (c < 128/255)
        assert (np.abs(residual) <= c).mean() == pytest.approx(norm.cdf(1) - norm.cdf(-1), abs=0.01)
        assert (np.abs(residual) <= c / 2).mean() == pytest.approx(norm.cdf(0.5) - norm.cdf(-0.5), abs=0.01)
        assert abs(np.median(residual)) < 0.01


@pytest.mark.parametrize("protocol, published", by_protocol([500, 250, 100, 75, 50], [250, 100, 50, 30, 15],
                                                             [60, 25, 12, 5, 3]))
def test_shot_noise_is_poisson_at_the_severitys_photon_count(protocol, published):
    x = 10 / 255  # dark: even c = 3 photons almost never reach the clip at 1
    for _, c in severities(protocol, "shot_noise", published):
        out = C.shot_noise(constant(10, 128), c, rng()) / 255  # poisson(x c) / c: mean x, variance x / c
        assert np.allclose(out * c, np.round(out * c))  # whole photon counts
        assert out.mean() == pytest.approx(x, rel=0.05)
        assert out.var() == pytest.approx(x / c, rel=0.06)


@pytest.mark.parametrize("protocol, published", by_protocol([0.01, 0.02, 0.03, 0.05, 0.07],
                                                             [0.01, 0.02, 0.05, 0.08, 0.14],
                                                             [0.03, 0.06, 0.09, 0.17, 0.27]))
def test_impulse_noise_flips_the_severitys_fraction_to_black_or_white(protocol, published):
    for _, c in severities(protocol, "impulse_noise", published):
        x = constant(100, 128)
        out = C.impulse_noise(x, c, rng())
        changed = out != 100
        assert set(np.unique(out[changed])) <= {0.0, 255.0}
        assert changed.mean() == pytest.approx(c, rel=0.1)
        assert (out[changed] == 255).mean() == pytest.approx(0.5, abs=0.05)


def test_defocus_kernels_are_antialiased_disks():
    for radius, blur in [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)]:
        kernel = C.disk(radius, blur)
        assert kernel.shape == (17, 17) and kernel.sum() == pytest.approx(1, abs=1e-6)
    # radius 1.5 covers the 3×3 square (corners at distance √2); a 0.1-sigma blur barely spreads it
    centre = C.disk(1.5, 0.1)[7:10, 7:10]
    assert centre == pytest.approx(np.full((3, 3), 1 / 9), abs=1e-3)
    # radius < 1: one pixel, smoothed by cv2's 3-tap Gaussian exp(-i²/2σ²)
    taps = np.exp(-np.array([1, 0, 1]) / (2 * 0.4**2))
    assert C.disk(0.3, 0.4)[7:10, 7:10] == pytest.approx(np.outer(taps, taps) / taps.sum() ** 2, abs=1e-6)
    # above radius 8 the grid grows to the radius and the blur to 5 taps (ImageNet-C's radius 10)
    taps = np.exp(-np.arange(-2, 3) ** 2 / (2 * 0.5**2))
    aliased = (np.add.outer(np.arange(-10, 11) ** 2, np.arange(-10, 11) ** 2) <= 100).astype(np.float64)
    from scipy import ndimage

    expected = ndimage.correlate(aliased / aliased.sum(), np.outer(taps, taps) / taps.sum() ** 2, mode="mirror")
    assert C.disk(10, 0.5) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("protocol, published", by_protocol(
    [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    [(0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)],
    [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)]))
def test_defocus_blur_spreads_a_point_over_the_severitys_disk(protocol, published):
    from scipy import ndimage

    x = np.zeros((48, 48, 3), dtype=np.uint8)
    x[24, 24] = 255
    for _, (radius, blur) in severities(protocol, "defocus_blur", published):
        out = C.defocus_blur(x, (radius, blur), rng())[..., 0] / 255
        # the kernel sums to 1 unless the disk reaches its grid's edge (radius 8 and 10), where the anti-aliasing
        # blur's mirrored border (cv2's default, as in ImageNet-C) adds a little
        assert out.sum() == pytest.approx(C.disk(radius, blur).sum(), abs=1e-6)
        assert C.disk(radius, blur).sum() == pytest.approx(1, abs=1e-6 if radius < 8 else 0.02)
        distance = np.hypot(*np.meshgrid(np.arange(48) - 24, np.arange(48) - 24))
        disk = distance <= radius
        # every pixel of the disk gets light; none beyond the disk grown by the anti-aliasing taps (1 or 2 px)
        assert (out[disk] > 0).all()
        grown = ndimage.binary_dilation(disk, np.ones((3, 3) if radius <= 8 else (5, 5)))
        assert out[~grown].max(initial=0) == 0
        flat = constant(77) * min(C.disk(radius, blur).sum(), 255 / 77)
        assert C.defocus_blur(constant(77), (radius, blur), rng()) == pytest.approx(flat, abs=1e-4)


def reference_glass_shuffle(x: np.ndarray, delta: int, iterations: int, generator: np.random.Generator) -> np.ndarray:
    """The scripts' loop, swap statement included (numpy views), with the same draws as the module."""
    h, w = x.shape[:2]
    rows, cols = range(h - delta, delta, -1), range(w - delta, delta, -1)
    for _ in range(iterations):
        offsets = generator.integers(-delta, delta, size=(len(rows), len(cols), 2))
        for i, row in enumerate(rows):
            for j, col in enumerate(cols):
                dx, dy = offsets[i, j]
                h_prime, w_prime = row + dy, col + dx
                x[row, col], x[h_prime, w_prime] = x[h_prime, w_prime], x[row, col]
    return x


@pytest.mark.parametrize("protocol, published", by_protocol(
    [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    [(0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)],
    [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)]))
def test_glass_blur_equals_the_scripts_sequential_shuffle(protocol, published):
    for severity, (sigma, delta, iterations) in severities(protocol, "glass_blur", published):
        x = noise_image(severity, 24)
        blurred = (C.gaussian(x / 255.0, sigma) * 255).astype(np.uint8)
        shuffled = reference_glass_shuffle(blurred.copy(), delta, iterations, rng(3))
        expected = np.clip(C.gaussian(shuffled / 255.0, sigma), 0, 1) * 255
        assert np.array_equal(C.glass_blur(x, (sigma, delta, iterations), rng(3)), expected)
        # pixels move by up to delta per sweep, further along chains of earlier moves (delta >= 2)
        moved = C.glass_shuffle(np.arange(24 * 24).reshape(24, 24, 1), delta, iterations, rng(3))[..., 0]
        assert not np.array_equal(moved, np.arange(24 * 24).reshape(24, 24))
        if delta == 1:  # offsets -1 or 0: each pixel comes from at most one row up and one column left per sweep
            rows, cols = np.divmod(moved, 24)
            assert (np.arange(24)[:, None] - rows).max() <= iterations
            assert (np.arange(24)[None, :] - cols).max() <= iterations


@pytest.mark.parametrize("protocol, published", by_protocol(
    [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)], [(10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)],
    [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)]))
def test_motion_blur_streaks_a_point_over_the_severitys_radius(protocol, published):
    x = np.zeros((8, 64), dtype=np.float64)
    x[4, 50] = 1.0
    for _, (radius, sigma) in severities(protocol, "motion_blur", published):
        out = C.motion_blur_image(x, radius, sigma, 0)
        # angle 0: out(r, c) = Σ_i w_i x(r, c + i), i < 2·radius + 1, w_i ∝ exp(-i²/2σ²)
        streak = out[4, 50 - 2 * radius:51][::-1]
        weights = np.exp(-np.arange(2 * radius + 1) ** 2 / (2 * sigma**2))
        assert streak == pytest.approx(weights / weights.sum(), rel=1e-9, abs=1e-300)
        assert out.sum() == pytest.approx(1) and (out > 0).sum() == 2 * radius + 1
        assert np.array_equal(C.motion_blur(constant(200), (radius, sigma), rng()), constant(200))


def test_motion_blur_is_imagemagicks_one_sided_gaussian_streak():
    weights, offsets = C.motion_blur_kernel(radius=6, sigma=2, angle=0)
    assert len(weights) == 13 and weights.sum() == pytest.approx(1)
    assert offsets == [(0, i) for i in range(13)]  # angle 0: along the row, towards +x
    assert C.motion_blur_kernel(6, 2, 90)[1] == [(i, 0) for i in range(13)]


@pytest.mark.parametrize("protocol, published", by_protocol(
    [(1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)],
    [(1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)],
    [(1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)]))
def test_zoom_blur_averages_the_image_with_its_central_zooms(protocol, published):
    x = noise_image(4, 40)
    for _, (stop, step) in severities(protocol, "zoom_blur", published):
        assert C.zoom_blur(constant(90), (stop, step), rng()) == pytest.approx(constant(90), abs=1e-4)
        factors = np.arange(1, stop, step)  # the script's arange (rounding may let the end point in)
        assert factors[0] == 1 and stop - 2 * step < factors[-1] < stop + 1e-9
        image = (x / 255.0).astype(np.float32)
        total = np.zeros_like(image)
        for z in factors:
            total += C.clipped_zoom(image, z)
        expected = np.clip((image + total) / (len(factors) + 1), 0, 1) * 255
        assert np.array_equal(C.zoom_blur(x, (stop, step), rng()), expected)


@pytest.mark.parametrize("protocol, published", by_protocol(
    [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
     (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
    [(0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
     (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)],
    [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
     (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)]))
def test_snow_brightens_and_adds_flakes(protocol, published):
    for severity, c in severities(protocol, "snow", published):
        keep = c[-1]
        out = C.snow(constant(0), c, rng(severity))
        # black image: keep * 0 + (1 - keep) * max(0, 0 * 1.5 + 0.5), plus flakes >= 0
        assert out.min() == pytest.approx((1 - keep) * 0.5 * 255, abs=1e-3)
        assert out.max() > out.min()


@pytest.mark.parametrize("protocol, published", by_protocol(
    [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    [(1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)],
    [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)]))
def test_frost_overlays_a_crop_of_a_frost_photograph(protocol, published):
    try:
        C.frost_dir()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    scale = {"cifar": 0.2, "tiny_imagenet": 0.3, "imagenet": 1}[protocol]  # cv2.resize(fx=...) in the script
    assert C.PROTOCOLS[protocol]["frost"] == [(keep, amount, scale) for keep, amount in published]
    with Image.open(C.frost_dir() / "frost2.png") as photo:
        assert C.frost_layer(1, scale).shape == (round(photo.height * scale), round(photo.width * scale), 3)
    for severity, (keep, amount) in enumerate(published, start=1):
        out = C.frost(constant(0), (keep, amount, scale), rng(severity))
        generator = rng(severity)
        layer = C.frost_layer(int(generator.integers(5)), scale)
        top, left = generator.integers(0, layer.shape[0] - 32), generator.integers(0, layer.shape[1] - 32)
        crop = layer[top:top + 32, left:left + 32]
        assert np.array_equal(out, np.clip(amount * crop.astype(np.float64), 0, 255))
        x = noise_image(severity)
        assert np.array_equal(C.frost(x, (keep, amount, scale), rng(severity)),
                              np.clip(keep * x + amount * crop, 0, 255))


def test_frost_refuses_images_larger_than_its_photographs():
    try:
        C.frost_dir()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    # the smallest photograph (560×315) bounds the crop: 62, 93, 314 px under the three protocols' scales
    assert [C.frost_max_size(p) for p in ("cifar", "tiny_imagenet", "imagenet")] == [62, 93, 314]
    with pytest.raises(ValueError, match="frost: images of 320×320 px are larger than Hendrycks' frost photographs"
                                         ".*fix: leave frost out of evaluation.corruptions"):
        C.frost(constant(0, 320), C.parameters("imagenet", "frost", 1), rng())


def test_frost_without_the_photographs_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(C, "FROST_PACKAGES", ())
    monkeypatch.setenv("MIXBENCH_FROST_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps imagecorruptions.*MIXBENCH_FROST_DIR"):
        C.frost_dir()


@pytest.mark.parametrize("protocol, published, size", [
    pytest.param("cifar", [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)], 32, id="cifar"),
    pytest.param("tiny_imagenet", [(0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)], 64, id="tiny"),
    pytest.param("imagenet", [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)], 128, id="imagenet")])
def test_fog_spans_the_fractal_between_its_bounds(protocol, published, size):
    for severity, (c, decay) in severities(protocol, "fog", published):
        v = 128 / 255
        out = C.fog(constant(128, size), (c, decay), rng(severity)) / 255
        # (v + c · plasma) · v / (v + c) with plasma spanning [0, 1] over the map (a power of two: all of it)
        assert out.min() == pytest.approx(v * v / (v + c), abs=1e-9)
        assert out.max() == pytest.approx(v, abs=1e-9)
        fractal = C.plasma_fractal(size, decay, rng(0))
        assert fractal.min() == 0 and fractal.max() == 1


@pytest.mark.parametrize("protocol, published", by_protocol([0.05, 0.1, 0.15, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4, 0.5],
                                                             [0.1, 0.2, 0.3, 0.4, 0.5]))
def test_brightness_raises_the_hsv_value_by_the_severitys_step(protocol, published):
    from matplotlib.colors import rgb_to_hsv

    for _, c in severities(protocol, "brightness", published):
        grey = C.brightness(constant(100), c, rng())
        assert grey == pytest.approx(np.full(grey.shape, min(100 / 255 + c, 1) * 255), abs=1e-9)
        x = np.array([[[200, 40, 10], [10, 100, 50]]], dtype=np.uint8)
        out = rgb_to_hsv(C.brightness(x, c, rng()) / 255)
        before = rgb_to_hsv(x / 255)
        assert out[..., :2] == pytest.approx(before[..., :2], abs=1e-9)
        assert out[..., 2] == pytest.approx(np.minimum(before[..., 2] + c, 1), abs=1e-9)


@pytest.mark.parametrize("protocol, published", by_protocol([0.75, 0.5, 0.4, 0.3, 0.15], [0.4, 0.3, 0.2, 0.1, 0.05],
                                                             [0.4, 0.3, 0.2, 0.1, 0.05]))
def test_contrast_scales_deviations_from_each_channels_mean(protocol, published):
    x = noise_image(5)
    f = x / 255
    mean = f.mean(axis=(0, 1), keepdims=True)
    for _, c in severities(protocol, "contrast", published):
        out = C.contrast(x, c, rng()) / 255
        assert out == pytest.approx(np.clip((f - mean) * c + mean, 0, 1), abs=1e-12)
        assert (out - mean).std(axis=(0, 1)) == pytest.approx(c * (f - mean).std(axis=(0, 1)), rel=1e-9)


@pytest.mark.parametrize("protocol, imsize, published", [
    pytest.param("cifar", 32, [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                               (0.1, 0.03, 0.03)], id="cifar"),
    pytest.param("tiny_imagenet", 64, [(0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06), (0.1, 0.03, 0.03),
                                       (0.16, 0.03, 0.02)], id="tiny"),
    pytest.param("imagenet", 244, [(2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02),
                                   (0.12, 0.01, 0.02)], id="imagenet")])
def test_elastic_transform_moves_pixels_by_the_severitys_pixel_amounts(protocol, imsize, published):
    in_pixels = [tuple(imsize * v for v in row) for row in published]  # the scripts' multiples of IMSIZE
    x = noise_image(6, 40)
    for _, (alpha, sigma, jitter) in severities(protocol, "elastic_transform", in_pixels):
        assert C.elastic_transform(constant(150, 40), (alpha, sigma, jitter), rng()) == pytest.approx(
            constant(150, 40), abs=1e-4)
        assert not np.array_equal(C.elastic_transform(x, (alpha, sigma, jitter), rng()).astype(np.uint8), x)
    # the affine part alone (alpha 0): a horizontal ramp stays a ramp shifted by at most the jitter's reach
    ramp = np.broadcast_to(np.arange(40, dtype=np.uint8)[None, :, None] * 6, (40, 40, 3)).copy()
    out = C.elastic_transform(ramp, (0, 0, 0.5), rng()) / 6
    assert np.abs(out[5:35, 5:35] - np.arange(40)[None, 5:35, None]).max() < 3


def test_elastic_affine_is_opencvs():
    src = np.float32([[10, 10], [20, 5], [3, 17]])
    forward = np.array([[1.1, 0.2, 3.0], [-0.1, 0.9, -2.0]])
    dst = src @ forward[:, :2].T + forward[:, 2]
    assert C.affine_from_points(src, dst) == pytest.approx(forward, abs=1e-5)


@pytest.mark.parametrize("protocol, published, size", [
    pytest.param("cifar", [0.95, 0.9, 0.85, 0.75, 0.65], 32, id="cifar"),
    pytest.param("tiny_imagenet", [0.9, 0.8, 0.7, 0.6, 0.5], 64, id="tiny"),
    pytest.param("imagenet", [0.6, 0.5, 0.4, 0.3, 0.25], 96, id="imagenet")])
def test_pixelate_is_a_box_downscale_and_upscale(protocol, published, size):
    x = noise_image(7, size)
    for _, c in severities(protocol, "pixelate", published):
        small = Image.fromarray(x).resize((int(size * c), int(size * c)), Image.Resampling.BOX)
        out = C.pixelate(x, c, rng())
        assert np.array_equal(out, np.asarray(small.resize((size, size), Image.Resampling.BOX)))
        assert len(np.unique(out.reshape(-1, 3), axis=0)) <= int(size * c) ** 2  # no more colours than blocks


@pytest.mark.parametrize("protocol, published", by_protocol([80, 65, 58, 50, 40], [65, 58, 50, 40, 25],
                                                             [25, 18, 15, 10, 7]))
def test_jpeg_compression_is_a_pil_round_trip_at_the_severitys_quality(protocol, published):
    x = noise_image(8)
    for _, quality in severities(protocol, "jpeg_compression", published):
        buffer = io.BytesIO()
        Image.fromarray(x).save(buffer, "JPEG", quality=quality)
        assert np.array_equal(C.jpeg_compression(x, quality, rng()), np.asarray(Image.open(buffer)))


WITHOUT_DRAWS = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"}


@pytest.mark.parametrize("size", [32, 72])  # the CIFAR and the ImageNet protocol (a grey crop 4 px smaller too)
@pytest.mark.parametrize("name", [n for n in C.CORRUPTIONS if n != "frost"])
def test_corrupt_is_seeded_per_image_and_keeps_grey_images_grey(name, size):
    images = np.stack([noise_image(i, size).transpose(2, 0, 1) for i in range(3)])
    out = C.corrupt(images, name, 3, seed=0)
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.array_equal(out, C.corrupt(images, name, 3, seed=0))
    # image i depends only on (seed, name, severity, index): a slice made alone is the same
    assert np.array_equal(out[2:], C.corrupt(images[2:], name, 3, seed=0, start=2))
    if name not in WITHOUT_DRAWS:  # another seed, other draws
        assert not np.array_equal(out, C.corrupt(images, name, 3, seed=1))
    grey = images[:, :1, :size - 4, :size - 4]
    assert C.corrupt(grey, name, 3, seed=0).shape == grey.shape


def test_corrupt_refuses_what_it_does_not_define():
    images = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        C.corrupt(images, "rain", 1, seed=0)
    with pytest.raises(ValueError, match="corruption severity 6 is outside 1-5"):
        C.corrupt(images, "contrast", 6, seed=0)


@pytest.mark.parametrize("size", [64, 224])
def test_every_corruption_at_every_severity_runs_on_larger_images(size):
    """One image through all 75 (corruption, severity) pairs of the Tiny-ImageNet (64 px) and ImageNet (224 px)
    protocols: a uint8 image of the input's shape, changed, and the same again for the same seed."""
    smooth = C.gaussian(noise_image(9, size) / 255.0, 3) * 255  # photo-like: noise, blurs and JPEG all show
    images = smooth.astype(np.uint8).transpose(2, 0, 1)[None]
    for name in C.CORRUPTIONS:
        if name == "frost":
            try:
                C.frost_dir()
            except FileNotFoundError:
                continue
        for severity in C.SEVERITIES:
            out = C.corrupt(images, name, severity, seed=0)
            assert out.dtype == np.uint8 and out.shape == images.shape, (name, severity)
            assert not np.array_equal(out, images), (name, severity)
            if severity == 3:
                assert np.array_equal(out, C.corrupt(images, name, severity, seed=0)), name


MAKE_SET = """
import sys, numpy as np
from mixbench.evaluation.corrupted_sets import CorruptedSets
images = np.random.default_rng(0).integers(0, 256, (40, 3, 32, 32)).astype(np.uint8)
sets = CorruptedSets(sys.argv[1], "toy", images, np.arange(40) % 10, seed=0)
for name in ("gaussian_noise", "glass_blur", "elastic_transform", "snow"):
    sets.get(name, 2)
"""


def test_corrupted_sets_are_bit_identical_across_processes_and_cached(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (40, 3, 32, 32)).astype(np.uint8)
    here = CorruptedSets(tmp_path / "here", "toy", images, np.arange(40) % 10, seed=0)
    made = {name: here.get(name, 2) for name in ("gaussian_noise", "glass_blur", "elastic_transform", "snow")}
    subprocess.run([sys.executable, "-c", MAKE_SET, str(tmp_path / "there")], check=True)
    there = CorruptedSets(tmp_path / "there", "toy", images, np.arange(40) % 10, seed=0)
    for name, array in made.items():
        path = there.path(name, 2)
        assert path.read_bytes() == here.path(name, 2).read_bytes()
        assert np.array_equal(np.load(path), array)
    # a second request reads the file rather than making the set again
    stamp = here.path("snow", 2).stat().st_mtime_ns
    assert np.array_equal(here.get("snow", 2), made["snow"])
    assert here.path("snow", 2).stat().st_mtime_ns == stamp
    # another clean split gets another folder; no temporary file is left behind
    other = CorruptedSets(tmp_path / "here", "toy", images[:20], np.arange(20) % 10, seed=0)
    assert other.folder != here.folder
    assert not list((tmp_path / "here").rglob("*.tmp"))


def test_sets_made_in_several_processes_equal_those_made_in_one(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (12, 1, 28, 28)).astype(np.uint8)
    labels = np.arange(12) % 10
    wanted = [("contrast", 1), ("fog", 2), ("shot_noise", 5)]
    parallel = CorruptedSets(tmp_path / "a", "toy", images, labels, seed=3)
    parallel.prepare(wanted, jobs=2)
    serial = CorruptedSets(tmp_path / "b", "toy", images, labels, seed=3)
    for name, severity in wanted:
        made = parallel.path(name, severity)
        assert made.is_file()
        assert np.array_equal(np.load(made), serial.get(name, severity))


def test_each_protocol_caches_its_sets_under_its_own_name(tmp_path):
    labels = np.arange(2)
    for size, tag in ((28, "v1"), (32, "v1"), (48, "v1-tiny_imagenet"), (96, "v1-imagenet")):
        images = np.random.default_rng(size).integers(0, 256, (2, 3, size, size)).astype(np.uint8)
        sets = CorruptedSets(tmp_path, "toy", images, labels, seed=0)
        assert sets.protocol == C.protocol_for(size)
        # CIFAR-C's name is the one it had before there were other protocols: sets made then stay valid
        assert sets.path("contrast", 2).name == f"contrast-2-s0-{tag}.npy"
        made = sets.get("contrast", 2)
        assert np.array_equal(np.load(sets.path("contrast", 2)), made)
        assert np.array_equal(made, C.corrupt(images, "contrast", 2, seed=0))
