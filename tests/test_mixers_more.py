"""Issue 15's input mixers: FMix, ResizeMix, GridMix, SmoothMix and timm's Mixup/CutMix switch.

Shared properties (as torchvision's TestCutMixMixUp): label weights sum to 1, λ is the mixed area, the same
draws give the same batch, the caller's tensor is never modified, batch and per-sample modes. Then each
method's deterministic core is replayed for fixed draws against values computed independently from the
reference algorithm (ecs-vlc/FMix and openmixup for FMix; openmixup for ResizeMix, GridMix and SmoothMix;
timm itself for the switch).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixbench.methods import create_method, list_methods, mixed_cross_entropy
from mixbench.methods.cards import create_with_card
from mixbench.methods.fmix import FMix, low_frequency_images

NEW = ["mixup_cutmix", "smoothmix", "fmix", "gridmix", "resizemix"]
GRID = {"n_holes": [2, 6], "cut_area_ratio": [0.5, 1.0], "cut_aspect_ratio": [0.5, 2.0]}  # openmixup's ranges

MIXERS = [
    ("fmix", {}),
    ("fmix", {"mode": "elem"}),
    ("fmix", {"max_soft": 0.2, "spectrum": "paper"}),
    ("resizemix", {}),
    ("resizemix", {"mode": "elem", "use_alpha": True}),
    ("resizemix", {"interpolation": "bilinear", "p": 0.5}),
    ("gridmix", GRID),
    ("gridmix", {**GRID, "mode": "elem"}),
    ("smoothmix", {}),
    ("smoothmix", {"mode": "elem"}),
    ("smoothmix", {"openmixup_lam": True}),
    ("mixup_cutmix", {}),
    ("mixup_cutmix", {"mode": "elem"}),
    ("mixup_cutmix", {"mix_prob": 0.5, "switch_prob": 1.0}),
]


def unique_batch(n: int = 6, c: int = 3, h: int = 32, w: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel value is unique and each sample has its own label, so any mix is traceable."""
    x = torch.arange(n * c * h * w, dtype=torch.float32).view(n, c, h, w) / (n * c * h * w)
    return x, torch.arange(n)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- registration ------------------------------------------------------------------------------------------


def test_the_new_methods_are_registered_with_their_class_facts():
    assert set(NEW) <= set(list_methods())
    orders = set()
    for name in NEW:
        cls = type(create_method(name))
        assert cls.name == name and cls.paper_name and cls.cost_source and cls.eval_passes == 1
        assert cls.display_order >= 60 and cls.cost_multiplier == 1.0
        orders.add(cls.display_order)
    assert len(orders) == len(NEW)


# ---- shared properties -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "hp"), MIXERS)
@pytest.mark.parametrize("n", [1, 6])
def test_mixer_properties(name, hp, n):
    method = create_method(name, **hp)
    x, y = unique_batch(n)
    before = x.clone()
    a = method(x, y, gen(3))
    b = method(x, y, gen(3))
    assert torch.equal(x, before), "the caller's tensor must never be modified"
    assert torch.equal(a.x, b.x) and torch.equal(a.lam, b.lam), "the same draws must give the identical batch"
    assert a.x.shape == x.shape and a.x.dtype == x.dtype
    lam = a.per_sample_lam()
    assert ((lam >= 0) & (lam <= 1)).all()
    assert torch.allclose(a.soft_targets(n).sum(1), torch.ones(n, dtype=torch.float32))
    assert torch.equal(a.y_a, y) and set(a.y_b.tolist()) <= set(y.tolist())
    if a.mask is not None:
        assert a.mask.shape == (n, 1, 32, 32) and ((a.mask >= 0) & (a.mask <= 1)).all()
        if name == "resizemix":  # the box holds the resized partner; outside it, x itself
            kept = a.mask.bool().expand_as(x)
            assert torch.equal(a.x[kept], x[kept])
        else:  # the mask's blend of x and its partner (recovered from y_b: labels are unique)
            assert torch.allclose(a.x, a.mask * x + (1 - a.mask) * x[a.y_b], atol=1e-6)
        share = a.mask.double().mean(dim=(1, 2, 3))
        expected = 1 - lam if hp.get("openmixup_lam") else lam
        assert torch.allclose(share, expected.double(), rtol=0, atol=1e-6), "λ must be the first image's share"


@pytest.mark.parametrize(("name", "hp"), [m for m in MIXERS if "mode" not in m[1]])
def test_batch_mode_shares_one_mask_and_elem_mode_draws_one_per_sample(name, hp):
    x, y = unique_batch(8)
    batch = create_method(name, **hp)(x, y, gen(5))
    assert batch.lam.dim() == 0
    if batch.mask is not None:
        assert (batch.mask == batch.mask[:1]).all()
    elem = create_method(name, **{**hp, "mode": "elem"})
    lams = torch.stack([elem(x, y, gen(seed)).lam for seed in range(3)])
    assert lams.shape == (3, 8) and len(set(lams.flatten().tolist())) > 8


@pytest.mark.parametrize("name", ["fmix", "gridmix", "resizemix"])
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_hard_masks_lambda_is_the_share_of_unchanged_pixels(name, mode):
    hp = {**(GRID if name == "gridmix" else {}), "mode": mode}
    method = create_method(name, **hp)
    x, y = unique_batch(6)
    for seed in range(10):
        drawn = method.sample(6, gen(seed))
        out = method.mix(x, y, **drawn)
        lam = out.per_sample_lam()
        kept = (out.x == x).all(dim=1).double().mean(dim=(1, 2))  # unique values: unchanged <=> still x
        index = drawn["index"]
        for i in range(6):
            if index[i] != i:  # a sample paired with itself shows no change
                assert kept[i].item() == pytest.approx(lam[i].item(), abs=1e-12), (seed, i)
        assert torch.equal(out.mask.double().mean(dim=(1, 2, 3)), lam.double())


@pytest.mark.parametrize(("name", "hp"), [("fmix", {}), ("resizemix", {}), ("gridmix", GRID), ("smoothmix", {}),
                                          ("mixup_cutmix", {"mix_prob": 0.0})])
def test_p_zero_never_mixes(name, hp):
    hp = hp if name == "mixup_cutmix" else {**hp, "p": 0.0}
    method = create_method(name, **hp)
    x, y = unique_batch(4)
    for seed in range(4):
        out = method(x, y, gen(seed))
        assert torch.equal(out.x, x) and float(out.lam) == 1.0


def test_p_half_mixes_about_half_the_samples():
    lam = create_method("gridmix", **GRID, p=0.5, mode="elem")(*unique_batch(400, c=1, h=16, w=16), gen(0)).lam
    assert abs((lam < 1).double().mean().item() - 0.5) < 0.08


@pytest.mark.parametrize("name", NEW)
def test_training_loss_trains_the_backbone(name):
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    method = create_with_card(name, "cifar")
    method.setup(backbone, 5)
    x, y = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    out = method.training_loss(backbone, x, y, gen(0))
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    assert 0.0 <= out.logs["lam"] <= 1.0


@pytest.mark.parametrize(("name", "hp", "match"), [
    ("fmix", {"max_soft": 0.7}, r"max_soft must be in \[0, 0.5\] \(0: hard mask edges\); got 0.7"),
    ("fmix", {"spectrum": "full"}, r"spectrum must be 'reference' .* or 'paper' .*; got 'full'"),
    ("fmix", {"p": 2}, r"p \(probability of mixing\) must be in \[0, 1\]; got 2"),
    ("resizemix", {"scope": [0.5, 0.2]}, r"scope \(the range of the box's side fraction τ\) must satisfy 0.0 <= min"),
    ("resizemix", {"scope": [0.1, 1.5]}, r"scope .* must lie in \[0, 1\]; got \[0.1, 1.5\]"),
    ("resizemix", {"interpolation": "lanczos"}, r"interpolation must be one of nearest, .*; got 'lanczos'"),
    ("gridmix", {"n_holes": [2.5, 6]}, r"n_holes \(holes across the crop\) must be whole numbers; got \[2.5, 6\]"),
    ("gridmix", {"cut_area_ratio": [0.5, 2]}, r"cut_area_ratio .* must be at most 1; got \[0.5, 2\]"),
    ("gridmix", {"mode": "pixel"}, r"mode must be 'batch' \(one mask per batch\) or 'elem'"),
    ("mixup_cutmix", {"mixup_alpha": 0, "cutmix_alpha": 0}, r"must be >= 0 and not both 0 \(0 turns one off\)"),
    ("mixup_cutmix", {"switch_prob": -0.1}, r"switch_prob must be in \[0, 1\]; got -0.1"),
])
def test_bad_hyper_parameters_are_clear(name, hp, match):
    with pytest.raises(ValueError, match=match):
        create_method(name, **hp)


def test_check_input_names_the_size_constraint():
    with pytest.raises(ValueError, match=r"FMix needs images of at least 2×2 px .*; got 1×8"):
        create_method("fmix").check_input((1, 8), "resnet18")
    with pytest.raises(ValueError, match=r"GridMix needs images of at least 4×4 px .*; got 3×3"):
        create_method("gridmix").check_input((3, 3), "resnet18")


# ---- FMix: replay against the reference algorithm ------------------------------------------------------------


def reference_fmix_mask(noise: np.ndarray, lam: float, coin: float, decay: float, h: int, w: int,
                        max_soft: float, spectrum: str) -> np.ndarray:
    """ecs-vlc/FMix fmix.py (make_low_freq_image + binarise_mask), in numpy, with its draws given."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 2] if w % 2 else np.fft.fftfreq(w)[: w // 2 + 1]
    scale = 1.0 / np.maximum(np.sqrt(fx[None, :] ** 2 + fy ** 2), 1.0 / max(w, h)) ** decay
    spec = scale[None, :, :, None] * noise[None]  # (ch=1, h, bins, 2), as get_spectrum
    # The official indexing takes axis 1 (frequency rows), not the last (real/imaginary) one.
    reference = spectrum == "reference"
    complex_spec = spec[:, 0] + 1j * spec[:, 1] if reference else spec[..., 0] + 1j * spec[..., 1]
    image = np.real(np.fft.irfftn(complex_spec, (h, w), axes=(-2, -1)))[0, :h, :w]
    image = image - image.min()
    image = image / image.max()
    order = image.reshape(-1).argsort()[::-1]
    size = h * w
    num = math.ceil(lam * size) if coin > 0.5 else math.floor(lam * size)
    soft_fraction = min(lam, 1 - lam) if (max_soft > lam or max_soft > 1 - lam) else max_soft
    soft = int(size * soft_fraction)
    flat = np.zeros(size)
    flat[order[: num + soft]] = 1
    flat[order[num - soft:]] = 0
    flat[order[num - soft: num + soft]] = np.linspace(1, 0, 2 * soft)
    return flat.reshape(h, w)


@pytest.mark.parametrize(("h", "w"), [(32, 32), (28, 28), (7, 9), (16, 12)])
@pytest.mark.parametrize("spectrum", ["reference", "paper"])
@pytest.mark.parametrize("max_soft", [0.0, 0.15])
def test_fmix_replays_the_reference_masks(h, w, spectrum, max_soft):
    method = FMix(decay_power=3.0, max_soft=max_soft, spectrum=spectrum, mode="elem")
    x, y = unique_batch(4, h=h, w=w)
    drawn = method.sample(4, gen(11))
    out = method.mix(x, y, **drawn)
    noise = FMix.noise_for(drawn["noise_seed"], h, w).numpy()
    for i in range(4):
        expected = reference_fmix_mask(noise[i], float(drawn["lam"][i]), float(drawn["coin"][i]), 3.0, h, w,
                                       max_soft, spectrum)
        assert np.allclose(out.mask[i, 0].double().numpy(), expected, atol=1e-6), i
        # λ is the realised mask mean: within one pixel's share of the drawn λ, exactly num/HW when hard.
        assert abs(float(out.lam[i]) - float(drawn["lam"][i])) <= 1 / (h * w) + 1e-12
        assert float(out.lam[i]) == pytest.approx(expected.mean(), abs=1e-9)


def test_fmix_reference_spectrum_keeps_only_two_width_frequencies_and_paper_spectrum_is_isotropic():
    h = w = 32
    power = {}
    for spectrum in ("reference", "paper"):
        method = FMix(spectrum=spectrum, mode="elem")
        drawn = method.sample(64, gen(0))
        noise = FMix.noise_for(drawn["noise_seed"], h, w)
        images = low_frequency_images(noise, 3.0, h, w, spectrum)
        power[spectrum] = torch.fft.rfft2(images).abs().mean(0)
    assert power["reference"][:, 2:].max() < 1e-9  # the official code's masks: width frequencies 0 and 1 only
    assert power["paper"][:, 2:6].mean() > 1e-2
    # Isotropic: as much power at (2, 0) as at (0, 2), within sampling noise.
    ratio = power["paper"][2, 0] / power["paper"][0, 2]
    assert 0.6 < ratio < 1.6


def test_fmix_reformulate_draws_lambda_from_beta_alpha_plus_one():
    lam = FMix(alpha=1.0, reformulate=True, mode="elem").sample(20000, gen(0))["lam"]
    assert lam.mean().item() == pytest.approx(2 / 3, abs=0.01)  # Beta(2, 1)


# ---- ResizeMix -------------------------------------------------------------------------------------------------


def reference_resizemix(x: torch.Tensor, index: torch.Tensor, tau: float, cy: int, cx: int, mode: str):
    """openmixup's resizemix for a square batch, with τ, the centre and the permutation given."""
    n, c, h, w = x.shape
    cut = int(h * tau)
    y1, y2 = np.clip(cy - cut // 2, 0, h), np.clip(cy + cut // 2, 0, h)
    x1, x2 = np.clip(cx - cut // 2, 0, w), np.clip(cx + cut // 2, 0, w)
    out = x.clone()
    if y2 > y1 and x2 > x1:
        out[:, :, y1:y2, x1:x2] = F.interpolate(x[index], (y2 - y1, x2 - x1), mode=mode)
    return out, 1 - (x2 - x1) * (y2 - y1) / (w * h)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_resizemix_replays_the_reference(interpolation):
    method = create_method("resizemix", interpolation=interpolation)
    x, y = unique_batch(5)
    for seed in range(20):
        drawn = method.sample(5, gen(seed))
        out = method.mix(x, y, **drawn)
        cy, cx = (int(v) for v in (drawn["center"][0] * 32).floor())
        expected, lam = reference_resizemix(x, drawn["index"], float(drawn["tau"][0]), cy, cx, interpolation)
        assert torch.equal(out.x, expected)
        assert float(out.lam) == lam
        assert 0.1 <= float(drawn["tau"][0]) <= 0.8


def test_resizemix_use_alpha_keeps_tau_in_scope_and_elem_mode_pastes_each_partner():
    method = create_method("resizemix", use_alpha=True, alpha=0.2, mode="elem")
    tau = method.sample(5000, gen(0))["tau"]
    assert tau.min() >= 0.1 and tau.max() <= 0.8
    x, y = unique_batch(6)
    drawn = method.sample(6, gen(1))
    out = method.mix(x, y, **drawn)
    for i in range(6):
        cy, cx = (int(v) for v in (drawn["center"][i] * 32).floor())
        partner_batch = x[drawn["index"]]  # reference_resizemix on sample i alone, its partner given
        expected, lam = reference_resizemix(torch.stack([x[i], partner_batch[i]]), torch.tensor([1, 1]),
                                            float(drawn["tau"][i]), cy, cx, "nearest")
        assert torch.equal(out.x[i], expected[0]) and float(out.lam[i]) == lam


# ---- GridMix ---------------------------------------------------------------------------------------------------


def reference_grid_mask(lam, n_holes, hole_aspect, area_ratio, crop_aspect, cx, cy, h, w) -> np.ndarray:
    """openmixup's rand_grid / GridMixupLoss._get_gridmask for a square image: 1 in the holes."""
    area = int(h * w * area_ratio)
    crop_w = int(np.sqrt(area / crop_aspect))
    crop_h = int(crop_w * crop_aspect)
    x0, y0 = int((w - crop_w) * cx), int((h - crop_h) * cy)
    patch_w = math.ceil(crop_w / n_holes)
    patch_h = int(patch_w * hole_aspect)
    rows = math.ceil(crop_h / patch_h)
    ratio = np.sqrt(1 - lam)
    hole_w = min(max(int(patch_w * ratio), 1), patch_w - 1)
    hole_h = min(max(int(patch_h * ratio), 1), patch_h - 1)
    mask = np.zeros((h, w))
    for i in range(n_holes + 1):
        for j in range(rows + 1):
            x1, y1 = min(patch_w * i, crop_w), min(patch_h * j, crop_h)
            x2, y2 = min(x1 + hole_w, crop_w), min(y1 + hole_h, crop_h)
            mask[y0 + y1: y0 + y2, x0 + x1: x0 + x2] = 1  # Python slicing: a negative start wraps around
    return mask


def test_gridmix_replays_the_reference_including_crops_larger_than_the_image():
    method = create_method("gridmix", **GRID, hole_aspect_ratio=[0.7, 1.5], mode="elem")
    x, y = unique_batch(8)
    overhanging = 0
    for seed in range(12):
        drawn = method.sample(8, gen(seed))
        out = method.mix(x, y, **drawn)
        for i in range(8):
            args = (float(drawn["lam"][i]), int(drawn["n_holes"][i]), float(drawn["hole_aspect"][i]),
                    float(drawn["area_ratio"][i]), float(drawn["crop_aspect"][i]),
                    float(drawn["corner"][i, 0]), float(drawn["corner"][i, 1]), 32, 32)
            holes = reference_grid_mask(*args)
            assert np.array_equal(1 - out.mask[i, 0].numpy(), holes), (seed, i)
            assert float(out.lam[i]) == 1 - holes.sum() / (32 * 32)
            area = int(32 * 32 * args[3])
            overhanging += int(np.sqrt(area / args[4])) * args[4] > 32 or int(np.sqrt(area / args[4])) > 32
    assert overhanging > 10  # the wrap-around case was exercised


# ---- SmoothMix -------------------------------------------------------------------------------------------------


def reference_smoothmix_kernel(h: int, k_h: int, k_w: int, sigma_u: float) -> torch.Tensor:
    """openmixup's gaussian_kernel(h, rand_h, rand_w, sigma) for a square, even-sized image, in float64."""
    rand_h, rand_w = int(k_h - h / 2), int(k_w - h / 2)
    sigma = (sigma_u / 4 + 0.25) * h
    s = 2 * h
    xs = torch.arange(s).repeat(s).view(s, s)
    grid = torch.stack([xs, xs.t()], dim=-1)
    grid = torch.roll(torch.roll(grid, rand_h, 0), rand_w, 1)
    crop = s // 4
    grid = grid[crop: s - crop, crop: s - crop]
    return torch.exp(-torch.sum((grid.double() - (s - 1) / 2) ** 2, dim=-1) / (2 * sigma**2))


@pytest.mark.parametrize("openmixup_lam", [False, True])
def test_smoothmix_replays_the_reference_kernel_and_documents_its_lambda(openmixup_lam):
    method = create_method("smoothmix", openmixup_lam=openmixup_lam)
    x, y = unique_batch(4)
    for seed in range(10):
        drawn = method.sample(4, gen(seed))
        out = method.mix(x, y, **drawn)
        k_h, k_w = (int(v) for v in (drawn["center"][0] * 32).floor())
        kernel = reference_smoothmix_kernel(32, k_h, k_w, float(drawn["sigma_u"][0]))
        expected = x * (1 - kernel.float()) + x[drawn["index"]] * kernel.float()
        assert torch.allclose(out.x, expected, atol=1e-6)
        assert torch.allclose(1 - out.mask[0, 0].double(), kernel, atol=1e-7)
        # openmixup returns sum(kernel)/(h·w), the partner's share, as the weight of y; the paper: 1 - that.
        openmixup = float(kernel.sum() / (32 * 32))
        assert float(out.lam) == pytest.approx(openmixup if openmixup_lam else 1 - openmixup, abs=1e-12)


def test_smoothmix_runs_on_odd_and_non_square_images():
    x, y = unique_batch(3, h=15, w=22)
    out = create_method("smoothmix", mode="elem")(x, y, gen(0))
    assert out.x.shape == x.shape and torch.allclose(out.mask.double().mean(dim=(1, 2, 3)), out.lam)


# ---- Mixup/CutMix switch: replay against timm ------------------------------------------------------------------


def timm_mix(monkeypatch, x, y, lam, use_cutmix, centers, mode, smoothing=0.1, num_classes=6):
    """timm.data.mixup.Mixup on a copy of x with its parameter draws and box centres given."""
    from timm.data import mixup as timm_mixup

    fn = timm_mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, label_smoothing=smoothing,
                          num_classes=num_classes)
    if mode == "batch":
        monkeypatch.setattr(fn, "_params_per_batch", lambda: (lam, use_cutmix))
    else:
        monkeypatch.setattr(fn, "_params_per_elem", lambda n: (np.asarray(lam, dtype=np.float32),
                                                               np.asarray(use_cutmix)))
    coords = iter([c for pair in centers for c in pair])
    monkeypatch.setattr(timm_mixup.np.random, "randint", lambda *a, **k: next(coords))
    return fn(x.clone(), y.clone())


@pytest.mark.parametrize(("lam", "use_cutmix"), [(0.7, False), (0.37, True), (1.0, True)])
def test_switch_batch_mode_replays_timm(monkeypatch, lam, use_cutmix):
    method = create_method("mixup_cutmix")
    x, y = unique_batch(6, h=16, w=12)
    cy, cx = 13, 2  # near the border: the box is clipped
    center = torch.tensor([[(cy + 0.5) / 16, (cx + 0.5) / 12]], dtype=torch.float64)
    drawn = {"lam": torch.tensor([lam], dtype=torch.float64), "use_cutmix": torch.tensor([use_cutmix]),
             "center": center, "index": torch.arange(5, -1, -1)}
    out = method.mix(x, y, **drawn)
    expected_x, expected_target = timm_mix(monkeypatch, x, y, lam, use_cutmix, [(cy, cx)], "batch")
    assert torch.equal(out.x, expected_x)
    assert torch.allclose(out.soft_targets(6) * 0.9 + 0.1 / 6, expected_target, atol=1e-6)
    # The loss InputMixer.training_loss takes (mixed CE, the method's label smoothing) is timm's soft-target CE.
    logits = torch.randn(6, 6)
    loss = mixed_cross_entropy(logits, out.y_a, out.y_b, out.lam, method.label_smoothing)
    soft_target_ce = torch.sum(-expected_target * F.log_softmax(logits, dim=-1), dim=-1).mean()  # timm's
    assert loss.item() == pytest.approx(soft_target_ce.item(), abs=1e-6)


def test_switch_elem_mode_replays_timm(monkeypatch):
    method = create_method("mixup_cutmix", mode="elem")
    x, y = unique_batch(6, h=16, w=16)
    lam = [0.3, 0.8, 1.0, 0.55, 0.2, 0.9]
    use_cutmix = [True, False, True, True, False, True]
    centers = [(3, 14), (0, 0), (8, 8), (15, 1), (0, 0), (6, 9)]
    timm_centers = [c for c, u, lam_i in zip(centers, use_cutmix, lam, strict=True)
                    if u and lam_i != 1.0]  # timm draws no box for λ = 1
    drawn = {"lam": torch.tensor(lam, dtype=torch.float64), "use_cutmix": torch.tensor(use_cutmix),
             "center": torch.tensor([[(a + 0.5) / 16, (b + 0.5) / 16] for a, b in centers], dtype=torch.float64),
             "index": torch.arange(5, -1, -1)}
    out = method.mix(x, y, **drawn)
    expected_x, expected_target = timm_mix(monkeypatch, x, y, lam, use_cutmix, timm_centers, "elem")
    assert torch.allclose(out.x, expected_x, atol=1e-6)
    assert torch.allclose(out.soft_targets(6) * 0.9 + 0.1 / 6, expected_target, atol=1e-6)
    assert torch.allclose(out.mask.double().mean(dim=(1, 2, 3)), out.lam, atol=1e-6)


def test_switch_draws_follow_switch_prob_and_the_pairing_is_timms():
    method = create_method("mixup_cutmix", mode="elem")
    drawn = method.sample(20000, gen(0))
    assert drawn["use_cutmix"].double().mean().item() == pytest.approx(0.5, abs=0.02)
    assert torch.equal(drawn["index"], torch.arange(19999, -1, -1))
    only_cutmix = create_method("mixup_cutmix", mixup_alpha=0.0, mode="elem").sample(100, gen(0))
    assert only_cutmix["use_cutmix"].all()
    only_mixup = create_method("mixup_cutmix", cutmix_alpha=0.0).sample(4, gen(0))
    assert not only_mixup["use_cutmix"].any()


# ---- published claims ------------------------------------------------------------------------------------------


def test_published_claims_of_the_new_methods_carry_their_table_cells():
    from mixbench.claims import load_claims

    claims = {(c.dataset, c.mixbench_backbone, c.method, c.epochs, c.metric): c for c in load_claims()}
    cases = {  # openmixup@37e1372 docs/en/mixup_benchmarks, read by hand
        ("CIFAR-100", "resnet18_cifar", "fmix", 400, "top1_acc"): (79.91, "median_last_n", "0.2"),
        ("CIFAR-100", "wrn28_8", "resizemix", 400, "top1_acc"): (84.87, "median_last_n", "1"),
        ("CIFAR-10", "resnext50_32x4d_cifar", "smoothmix", 1200, "top1_acc"): (96.77, "median_last_n", "0.2"),
        ("CIFAR-100", "deit_small_patch16_224", "gridmix", 600, "top1_acc"): (74.96, "best_last_n", "1"),
        ("Tiny-ImageNet", "resnet18_cifar", "smoothmix", 400, "top1_acc"): (66.65, "median_last_n", "0.2"),
        ("ImageNet-1k", "resnet50", "gridmix", 300, "top1_acc"): (78.50, "median_last_n", "0.2"),
        ("ImageNet-1k", "resnext101_32x4d", "resizemix", 100, "top1_acc"): (80.55, "median_last_n", "1"),
        ("ImageNet-1k", "deit_small_patch16_224", "fmix", 300, "top1_acc"): (77.37, "best", "0.2"),
        ("iNaturalist2018", "resnet50", "fmix", 100, "top1_acc"): (63.71, "median_last_n", "1"),
    }
    for key, (value, kind, alpha) in cases.items():
        claim = claims[key]
        assert (claim.value, claim.statistic.kind) == (value, kind), key
        assert f"Beta alpha={alpha};" in claim.note and "openmixup@37e1372" in claim.source, key
    swin_memory = claims["CIFAR-100", "swin_tiny_patch4_window7_224", "smoothmix", None, "gpu_memory_GB"]
    assert swin_memory.value == 11.4
    # No claim for a cell the tables leave empty ("-"): GridMix on ImageNet is ResNet-50 only.
    assert ("ImageNet-1k", "resnet18", "gridmix", 100, "top1_acc") not in claims
