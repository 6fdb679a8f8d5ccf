"""Each CIFAR-C corruption against its definition (make_cifar_c.py, hendrycks/robustness), and the cached sets."""

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


def test_gaussian_noise_adds_noise_of_the_severitys_std():
    for severity, c in enumerate([0.04, 0.06, 0.08, 0.09, 0.10], start=1):
        x = constant(128, 128)
        out = C.gaussian_noise(x, severity, rng())
        residual = out / 255 - 128 / 255
        assert residual.std() == pytest.approx(c, rel=0.03)
        assert abs(residual.mean()) < 0.005


def test_shot_noise_is_poisson_at_the_severitys_photon_count():
    for severity, c in enumerate([500, 250, 100, 75, 50], start=1):
        x = constant(128, 128)
        out = C.shot_noise(x, severity, rng()) / 255  # poisson(x c) / c: mean x, variance x / c
        assert out.mean() == pytest.approx(128 / 255, rel=0.01)
        assert out.var() == pytest.approx((128 / 255) / c, rel=0.06)


def test_impulse_noise_flips_the_severitys_fraction_to_black_or_white():
    for severity, c in enumerate([0.01, 0.02, 0.03, 0.05, 0.07], start=1):
        x = constant(100, 128)
        out = C.impulse_noise(x, severity, rng())
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
    for severity in range(1, 6):
        assert C.defocus_blur(constant(77), severity, rng()) == pytest.approx(constant(77), abs=1e-4)


def reference_glass_shuffle(x: np.ndarray, delta: int, iterations: int, generator: np.random.Generator) -> np.ndarray:
    """make_cifar_c.py's loop, swap statement included (numpy views), with the same draws as the module."""
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


def test_glass_blur_equals_the_scripts_sequential_shuffle():
    for severity, (sigma, delta, iterations) in enumerate(
            [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)], start=1):
        x = noise_image(severity)
        blurred = (C.gaussian(x / 255.0, sigma) * 255).astype(np.uint8)
        shuffled = reference_glass_shuffle(blurred.copy(), delta, iterations, rng(3))
        expected = np.clip(C.gaussian(shuffled / 255.0, sigma), 0, 1) * 255
        assert np.array_equal(C.glass_blur(x, severity, rng(3)), expected)


def test_motion_blur_is_imagemagicks_one_sided_gaussian_streak():
    weights, offsets = C.motion_blur_kernel(radius=6, sigma=2, angle=0)
    assert len(weights) == 13 and weights.sum() == pytest.approx(1)
    assert offsets == [(0, i) for i in range(13)]  # angle 0: along the row, towards +x
    assert C.motion_blur_kernel(6, 2, 90)[1] == [(i, 0) for i in range(13)]
    x = np.zeros((32, 32), dtype=np.float64)
    x[16, 20] = 1.0
    out = C.motion_blur_image(x, 6, 2, 0)
    # out(r, c) = Σ w_i x(r, c + i): the point shows up i columns to its left with weight w_i
    assert out[16, 8:21][::-1] == pytest.approx(weights)
    assert out.sum() == pytest.approx(1) and out[15].sum() == 0
    for severity in range(1, 6):
        assert np.array_equal(C.motion_blur(constant(200), severity, rng()), constant(200))


def test_zoom_blur_averages_the_image_with_its_central_zooms():
    for severity in range(1, 6):
        assert C.zoom_blur(constant(90), severity, rng()) == pytest.approx(constant(90), abs=1e-4)
    x = noise_image(4)
    expected = x / 255.0
    factors = np.arange(1, 1.06, 0.01)
    total = np.zeros_like(expected, dtype=np.float32)
    for z in factors:
        total += C.clipped_zoom((x / 255.0).astype(np.float32), z)
    expected = np.clip(((x / 255.0).astype(np.float32) + total) / (len(factors) + 1), 0, 1) * 255
    assert np.array_equal(C.zoom_blur(x, 1, rng()), expected)
    assert len(factors) == 7  # the script's arange: 1.00 .. 1.06, rounding lets the end point in


def test_snow_brightens_and_adds_flakes():
    for severity, keep in enumerate([0.95, 0.9, 0.9, 0.85, 0.8], start=1):
        out = C.snow(constant(0), severity, rng(severity))
        # black image: keep * 0 + (1 - keep) * max(0, 0 * 1.5 + 0.5), plus flakes >= 0
        assert out.min() == pytest.approx((1 - keep) * 0.5 * 255, abs=1e-3)
        assert out.max() > out.min()


def test_frost_overlays_a_crop_of_a_frost_photograph():
    try:
        C.frost_dir()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    for severity, (keep, amount) in enumerate([(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)], start=1):
        out = C.frost(constant(0), severity, rng(severity))
        generator = rng(severity)
        layer = C.frost_layer(int(generator.integers(5)))
        top, left = generator.integers(0, layer.shape[0] - 32), generator.integers(0, layer.shape[1] - 32)
        assert np.array_equal(out, np.clip(amount * layer[top:top + 32, left:left + 32].astype(np.float64), 0, 255))
        x = noise_image(severity)
        assert np.array_equal(C.frost(x, severity, rng(severity)),
                              np.clip(keep * x + amount * layer[top:top + 32, left:left + 32], 0, 255))


def test_frost_without_the_photographs_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(C, "FROST_PACKAGES", ())
    monkeypatch.setenv("MIXBENCH_FROST_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps imagecorruptions.*MIXBENCH_FROST_DIR"):
        C.frost_dir()


def test_fog_spans_the_fractal_between_its_bounds():
    for severity, (c, decay) in enumerate([(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)], start=1):
        v = 128 / 255
        out = C.fog(constant(128), severity, rng(severity)) / 255
        # (v + c · plasma) · v / (v + c) with plasma spanning [0, 1] over the 32×32 map
        assert out.min() == pytest.approx(v * v / (v + c), abs=1e-9)
        assert out.max() == pytest.approx(v, abs=1e-9)
        fractal = C.plasma_fractal(32, decay, rng(0))
        assert fractal.min() == 0 and fractal.max() == 1


def test_brightness_raises_the_hsv_value_by_the_severitys_step():
    from matplotlib.colors import rgb_to_hsv

    for severity, c in enumerate([0.05, 0.1, 0.15, 0.2, 0.3], start=1):
        grey = C.brightness(constant(100), severity, rng())
        assert grey == pytest.approx(np.full(grey.shape, min(100 / 255 + c, 1) * 255), abs=1e-9)
        x = np.array([[[200, 40, 10], [10, 100, 50]]], dtype=np.uint8)
        out = rgb_to_hsv(C.brightness(x, severity, rng()) / 255)
        before = rgb_to_hsv(x / 255)
        assert out[..., :2] == pytest.approx(before[..., :2], abs=1e-9)
        assert out[..., 2] == pytest.approx(np.minimum(before[..., 2] + c, 1), abs=1e-9)


def test_contrast_scales_deviations_from_each_channels_mean():
    x = noise_image(5)
    for severity, c in enumerate([0.75, 0.5, 0.4, 0.3, 0.15], start=1):
        f = x / 255
        mean = f.mean(axis=(0, 1), keepdims=True)
        assert np.array_equal(C.contrast(x, severity, rng()), np.clip((f - mean) * c + mean, 0, 1) * 255)


def test_elastic_transform_moves_pixels_but_keeps_a_flat_image():
    src = np.float32([[10, 10], [20, 5], [3, 17]])
    forward = np.array([[1.1, 0.2, 3.0], [-0.1, 0.9, -2.0]])
    dst = src @ forward[:, :2].T + forward[:, 2]
    assert C.affine_from_points(src, dst) == pytest.approx(forward, abs=1e-5)
    x = noise_image(6)
    for severity in range(1, 6):
        assert C.elastic_transform(constant(150), severity, rng()) == pytest.approx(constant(150), abs=1e-4)
        assert not np.array_equal(C.elastic_transform(x, severity, rng()).astype(np.uint8), x)


def test_pixelate_is_a_box_downscale_and_upscale():
    x = noise_image(7)
    for severity, c in enumerate([0.95, 0.9, 0.85, 0.75, 0.65], start=1):
        small = Image.fromarray(x).resize((int(32 * c), int(32 * c)), Image.Resampling.BOX)
        assert np.array_equal(C.pixelate(x, severity, rng()), np.asarray(small.resize((32, 32), Image.Resampling.BOX)))


def test_jpeg_compression_is_a_pil_round_trip_at_the_severitys_quality():
    x = noise_image(8)
    for severity, quality in enumerate([80, 65, 58, 50, 40], start=1):
        buffer = io.BytesIO()
        Image.fromarray(x).save(buffer, "JPEG", quality=quality)
        assert np.array_equal(C.jpeg_compression(x, severity, rng()), np.asarray(Image.open(buffer)))


@pytest.mark.parametrize("name", [n for n in C.CORRUPTIONS if n != "frost"])
def test_corrupt_is_seeded_per_image_and_keeps_grey_images_grey(name):
    images = np.stack([noise_image(i).transpose(2, 0, 1) for i in range(3)])
    out = C.corrupt(images, name, 3, seed=0)
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.array_equal(out, C.corrupt(images, name, 3, seed=0))
    # image i depends only on (seed, name, severity, index): a slice made alone is the same
    assert np.array_equal(out[2:], C.corrupt(images[2:], name, 3, seed=0, start=2))
    grey = images[:, :1, :28, :28]
    assert C.corrupt(grey, name, 3, seed=0).shape == grey.shape


def test_corrupt_refuses_what_it_does_not_define():
    images = np.zeros((1, 3, 64, 64), dtype=np.uint8)
    with pytest.raises(ValueError, match="at most 32 px.*evaluation.corruptions: none"):
        C.corrupt(images, "contrast", 1, seed=0)
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        C.corrupt(images[..., :32, :32], "rain", 1, seed=0)


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
