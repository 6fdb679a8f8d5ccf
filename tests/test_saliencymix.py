"""SaliencyMix: the box on the fine-grained saliency peak, and the torch port of OpenCV's detector against OpenCV."""

from __future__ import annotations

import gzip
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixbench.methods import create_method
from mixbench.methods._saliency import fine_grained_saliency, opencv_fine_grained_saliency, saliency_peaks
from mixbench.methods.cards import load_card
from mixbench.methods.saliencymix import SaliencyMix

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_images(n: int, size: int | tuple[int, int], seed: int = 0, channels: int = 3) -> torch.Tensor:
    """Normalised float images with structure (blobs at a few scales) plus noise, like augmented photos."""
    height, width = (size, size) if isinstance(size, int) else size
    g = gen(seed)
    coarse = F.interpolate(torch.rand(n, channels, 4, 4, generator=g), size=(height, width), mode="bicubic")
    fine = F.interpolate(torch.rand(n, channels, 16, 16, generator=g), size=(height, width), mode="bilinear")
    pixels = (0.6 * coarse + 0.3 * fine + 0.1 * torch.rand(n, channels, height, width, generator=g)).clamp(0, 1)
    return (pixels - 0.45) / 0.22


def unique_batch(n: int = 6, c: int = 3, h: int = 16, w: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n * c * h * w, dtype=torch.float32).view(n, c, h, w) / (n * c * h * w)
    return x, torch.arange(n)


def read_idx_images(path: Path, limit: int) -> np.ndarray:
    """Gzipped IDX images: magic 2051, big-endian uint32 count/rows/cols, then uint8 pixels."""
    with gzip.open(path, "rb") as f:
        header = np.frombuffer(f.read(16), dtype=">u4")
        assert header[0] == 2051, f"{path} is not an IDX image file (magic {header[0]})"
        count, rows, cols = (int(v) for v in header[1:])
        count = min(count, limit)
        return np.frombuffer(f.read(count * rows * cols), dtype=np.uint8).reshape(count, rows, cols)


# ---- the torch port against OpenCV --------------------------------------------------------------------------


def agreement(images: torch.Tensor) -> tuple[float, float, float]:
    """(peak agreement, mean per-image map correlation, share of bit-identical maps), torch port vs OpenCV."""
    ours, theirs = fine_grained_saliency(images), opencv_fine_grained_saliency(images)
    peaks = (saliency_peaks(ours) == saliency_peaks(theirs)).all(dim=1).float().mean().item()
    a, b = ours.flatten(1).double(), theirs.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    denom = (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    corr = torch.where(denom > 1e-12, (a * b).sum(1) / denom, 1.0).mean().item()
    exact = (ours == theirs).flatten(1).all(dim=1).float().mean().item()
    return peaks, corr, exact


SIZES = [(28, 200), (32, 200), (64, 100), (224, 32)]  # (px, images per set): OpenCV runs one image at a time


@pytest.mark.parametrize(("size", "count"), SIZES)
def test_torch_saliency_matches_opencv_on_fashion_mnist(size, count):
    pytest.importorskip("cv2", reason="needs opencv-contrib-python-headless (pip install 'mixbench[saliency]')")
    if not FASHION_MNIST.exists():
        pytest.skip(f"Fashion-MNIST not found at {FASHION_MNIST} (Debian package dataset-fashion-mnist)")
    raw = torch.from_numpy(read_idx_images(FASHION_MNIST, count).copy()).float()[:, None]
    pixels = raw if size == 28 else F.interpolate(raw, size=(size, size), mode="bilinear", align_corners=False)
    grey = (pixels / 255 - 0.2860) / 0.3530  # as mixbench feeds Fashion-MNIST: 1 channel, normalised
    tinted = torch.cat([grey * 0.9, grey, grey * 1.1 + 0.1], dim=1)  # a 3-channel version, for the grey conversion
    uint8 = pixels.clamp(0, 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    report = []
    for name, images in (("grey float", grey), ("RGB float", tinted), ("uint8", uint8)):
        peaks, corr, exact = agreement(images)
        report.append(f"{name}: peaks {peaks:.1%}, correlation {corr:.5f}, identical maps {exact:.1%}")
        print(f"fashion-mnist {size}px {report[-1]}")
        assert peaks >= 0.95 and corr >= 0.99, f"{size}px: " + "; ".join(report)


@pytest.mark.parametrize(("size", "count"), SIZES)
def test_torch_saliency_matches_opencv_on_synthetic_images(size, count):
    pytest.importorskip("cv2", reason="needs opencv-contrib-python-headless (pip install 'mixbench[saliency]')")
    images = smooth_images(count, size, seed=size)
    noise = torch.randn(count, 3, size, size, generator=gen(size))
    report = []
    for name, batch in (("smooth", images), ("gaussian noise", noise)):
        peaks, corr, exact = agreement(batch)
        report.append(f"{name}: peaks {peaks:.1%}, correlation {corr:.5f}, identical maps {exact:.1%}")
        print(f"synthetic {size}px {report[-1]}")
        assert peaks >= 0.95 and corr >= 0.99, f"{size}px: " + "; ".join(report)


def test_torch_saliency_on_non_square_images_matches_opencv():
    pytest.importorskip("cv2", reason="needs opencv-contrib-python-headless")
    peaks, corr, _ = agreement(smooth_images(20, (24, 40), seed=3))
    assert peaks >= 0.95 and corr >= 0.99, f"peaks {peaks:.1%}, correlation {corr:.5f}"


def test_float_input_is_read_as_bytes_like_opencv():
    """OpenCV reads the float32 grey image's bytes as the centre values: a 2⁻¹² nudge of one pixel moves the map."""
    pytest.importorskip("cv2", reason="needs opencv-contrib-python-headless")
    image = smooth_images(1, 32, seed=5, channels=1)
    nudged = image.clone()
    nudged[0, 0, 0, 0] *= 1 + 2**-12  # changes the low mantissa bytes of the blurred grey value, not its size
    before, after = opencv_fine_grained_saliency(image), opencv_fine_grained_saliency(nudged)
    assert not torch.equal(before, after), "OpenCV no longer reads float input as bytes; revisit _saliency.py"
    assert torch.equal(fine_grained_saliency(nudged), after)


def test_saliency_rejects_unsupported_shapes():
    with pytest.raises(ValueError, match=r"takes \(N, C, H, W\) images with C = 1 or 3; got \(2, 2, 8, 8\)"):
        fine_grained_saliency(torch.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match=r"at least 2×2 px; got 1×8"):
        fine_grained_saliency(torch.zeros(2, 3, 1, 8))


def test_peak_is_the_first_maximum_in_row_major_order():
    maps = torch.zeros(2, 3, 4, dtype=torch.uint8)
    maps[0, 1, 2] = maps[0, 2, 0] = 9
    maps[1] = 5  # all equal: the very first pixel
    assert saliency_peaks(maps).tolist() == [[1, 2], [0, 0]]


# ---- the mixer ------------------------------------------------------------------------------------------


def reference_saliencymix(x: torch.Tensor, lam: float, index: torch.Tensor) -> tuple[torch.Tensor, float]:
    """openmixup's saliencymix for given λ and permutation (REFERENCE.md §4), written out with OpenCV."""
    import cv2

    img = x.clone()
    _, _, h, w = img.shape
    cut_rat = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * cut_rat), int(w * cut_rat)
    source = img[index[0]].float().cpu().numpy().transpose(1, 2, 0)
    _, sal = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(source)
    r, c = np.unravel_index(np.argmax((sal * 255).astype("uint8"), axis=None), sal.shape)
    y1, y2 = np.clip(r - cut_h // 2, 0, h), np.clip(r + cut_h // 2, 0, h)
    x1, x2 = np.clip(c - cut_w // 2, 0, w), np.clip(c + cut_w // 2, 0, w)
    img[:, :, y1:y2, x1:x2] = img[index, :, y1:y2, x1:x2]
    return img, 1 - (y2 - y1) * (x2 - x1) / (h * w)


@pytest.mark.parametrize("backend", ["torch", "opencv"])
def test_batch_mode_is_the_reference(backend):
    pytest.importorskip("cv2", reason="the reference needs opencv-contrib-python-headless")
    x, y = smooth_images(9, (32, 40), seed=1), torch.arange(9)
    method = create_method("saliencymix", alpha=1.0, backend=backend)
    for seed in range(12):
        drawn = method.sample(9, gen(seed))
        out = method.mix(x, y, **drawn)
        expected, lam = reference_saliencymix(x, float(drawn["lam"]), drawn["index"])
        assert torch.equal(out.x, expected), f"seed {seed}"
        assert float(out.lam) == lam and torch.equal(out.y_b, y[drawn["index"]])


@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("n", [1, 5, 8])
def test_mixer_properties(mode, n):
    method = create_method("saliencymix", mode=mode, alpha=1.0)
    x, y = unique_batch(n, h=16, w=20)
    before = x.clone()
    a, b = method(x, y, gen(7)), method(x, y, gen(7))
    assert torch.equal(x, before), "the caller's tensor must never be modified"
    assert torch.equal(a.x, b.x) and torch.equal(a.lam, b.lam), "same seed must give the identical batch"
    lam = a.per_sample_lam()
    assert ((lam >= 0) & (lam <= 1)).all()
    # λ is exactly 1 - the box area, i.e. the mask mean, and only the box changed.
    assert torch.allclose(a.mask.double().mean(dim=(1, 2, 3)), lam, rtol=0, atol=1e-12)
    kept = a.mask.bool().expand_as(x)
    assert torch.equal(a.x[kept], x[kept])
    assert torch.equal(a.y_a, y) and set(a.y_b.tolist()) <= set(y.tolist())


def test_elem_mode_centres_each_box_on_its_own_sources_peak():
    x, y = smooth_images(6, 32, seed=2), torch.arange(6)
    method = create_method("saliencymix", mode="elem", alpha=1.0)
    drawn = method.sample(6, gen(4))
    out = method.mix(x, y, **drawn)
    peaks = saliency_peaks(fine_grained_saliency(x[drawn["index"]]))
    lam = out.lam
    assert len(set(lam.tolist())) > 1
    for i in range(6):
        r = math.sqrt(1 - float(drawn["lam"][i]))
        cut_h, cut_w = int(32 * r), int(32 * r)
        pr, pc = peaks[i].tolist()
        y1, y2 = max(pr - cut_h // 2, 0), min(pr + cut_h // 2, 32)
        x1, x2 = max(pc - cut_w // 2, 0), min(pc + cut_w // 2, 32)
        assert float(lam[i]) == 1 - (y2 - y1) * (x2 - x1) / 1024
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[y1:y2, x1:x2] = True
        assert torch.equal(out.mask[i, 0] == 0, inside)
        assert torch.equal(out.x[i][:, inside], x[drawn["index"][i]][:, inside])


def test_box_lambda_is_one_minus_the_clipped_area():
    """Peaks near the border clip the box; λ follows the clipped area exactly."""
    method = SaliencyMix(alpha=1.0)
    x, y = unique_batch(4, h=16, w=16)
    for seed in range(30):
        out = method(x, y, gen(seed))
        area = (out.mask[0, 0] == 0).sum().item()
        assert float(out.lam) == 1 - area / 256


def test_no_mix_computes_no_saliency(monkeypatch):
    method = create_method("saliencymix", p=0.0, mode="elem")
    monkeypatch.setattr(method, "saliency_maps", lambda images: pytest.fail("saliency computed for λ = 1"))
    x, y = unique_batch(4)
    out = method(x, y, gen(0))
    assert torch.equal(out.x, x) and (out.lam == 1).all()


def test_p_half_mixes_about_half_the_samples():
    lam = SaliencyMix(p=0.5, mode="elem").sample(4000, gen(0))["lam"]
    assert abs((lam < 1).float().mean().item() - 0.5) < 0.03


def test_opencv_backend_agrees_with_the_default():
    pytest.importorskip("cv2", reason="needs opencv-contrib-python-headless")
    x, y = smooth_images(8, 32, seed=9), torch.arange(8)
    ours, theirs = SaliencyMix(mode="elem"), SaliencyMix(mode="elem", backend="opencv")
    assert torch.equal(ours(x, y, gen(3)).x, theirs(x, y, gen(3)).x)


def test_bad_configuration_errors_are_clear(monkeypatch):
    with pytest.raises(ValueError, match=r"backend must be 'torch' \(batched .*'opencv' \(the reference\); got 'cv'"):
        create_method("saliencymix", backend="cv")
    with pytest.raises(ValueError, match=r"mode must be 'batch'"):
        create_method("saliencymix", mode="pixel")
    with pytest.raises(ValueError, match=r"takes 1- or 3-channel images; got 4"):
        SaliencyMix()(torch.zeros(2, 4, 8, 8), torch.arange(2), gen(0))
    with pytest.raises(ValueError, match=r"at least 2×2 px; got 1×32"):
        SaliencyMix().check_input((1, 32), "resnet18")
    SaliencyMix().check_input((28, 28), "resnet18")
    monkeypatch.setitem(sys.modules, "cv2", None)  # OpenCV not installed
    with pytest.raises(ValueError, match=r"pip install 'mixbench\[saliency\]'.*or use backend='torch'"):
        SaliencyMix(backend="opencv").check_input((32, 32), "resnet18")
    with pytest.raises(ImportError, match=r"pip install 'mixbench\[saliency\]'"):
        SaliencyMix(backend="opencv")(torch.zeros(2, 3, 8, 8), torch.arange(2), gen(0))
    SaliencyMix().check_input((32, 32), "resnet18")  # the torch back end needs no extra


def test_training_loss_trains_the_backbone_and_nothing_else():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    method = create_method("saliencymix")
    method.setup(backbone, 5)
    x, y = smooth_images(6, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    out = method.training_loss(backbone, x, y, gen(0))
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
    assert list(method.parameters()) == [] and x.grad is None
    assert 0.0 <= out.logs["lam"] <= 1.0


def test_card_matches_the_class():
    card = load_card("saliencymix")
    assert card["version"] == SaliencyMix.version and card["name"] == SaliencyMix.name
    assert {f: card["families"][f]["alpha"] for f in ("cifar", "tiny", "imagenet")} == {
        "cifar": 0.2, "tiny": 1.0, "imagenet": 1.0}
    create_method("saliencymix", **card["defaults"], **card["families"]["cifar"])
