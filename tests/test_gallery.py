"""`mixbench show`: a gallery for every registered method, the protocol for model-aware ones, the fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mixbench.cli import main
from mixbench.gallery import DISPLAY_BACKBONE, GalleryUnsupported, show_method, write_gallery
from mixbench.methods import registry
from mixbench.methods.base import InputMixer, Method, MixedBatch, StepOutput
from mixbench.methods.registry import UnknownMethodError, get_method_class, list_methods

PNG = b"\x89PNG\r\n\x1a\n"


def registered_methods() -> list:
    """Every registered method. One that cannot be imported (an optional dependency, or not written yet) is
    skipped with the reason. One that mixes with a model's help runs a network, so it is marked slow; until it
    implements the gallery's protocol, `mix_for_display`, it is an expected failure that says so."""
    params = []
    for name in list_methods():
        try:
            cls = get_method_class(name)
        except UnknownMethodError as err:
            params.append(pytest.param(name, marks=pytest.mark.skip(reason=f"{name} cannot be imported: {err}")))
            continue
        marks = []
        if not issubclass(cls, InputMixer):
            marks.append(pytest.mark.slow)
            if not callable(getattr(cls, "mix_for_display", None)):
                marks.append(pytest.mark.xfail(raises=GalleryUnsupported, strict=True, reason=(
                    f"{name} needs a model to mix and has no mix_for_display(backbone, x, y, gen) -> MixedBatch yet")))
        params.append(pytest.param(name, marks=marks))
    return params


@pytest.mark.parametrize("name", registered_methods())
def test_show_writes_a_png_for_every_registered_method(name, tmp_path):
    out = write_gallery(tmp_path / f"{name}.png", name, n=3, seed=0)
    assert out.read_bytes()[:8] == PNG


def test_the_gallery_is_fixed_by_the_seed(tmp_path):
    a = write_gallery(tmp_path / "a.png", "cutmix", n=2, seed=3, hparams={"alpha": 1.0}).read_bytes()
    b = write_gallery(tmp_path / "b.png", "cutmix", n=2, seed=3, hparams={"alpha": 1.0}).read_bytes()
    c = write_gallery(tmp_path / "c.png", "cutmix", n=2, seed=4, hparams={"alpha": 1.0}).read_bytes()
    assert a == b != c


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_columns_sources_mask_and_lambda():
    fig = show_method("cutmix", n=2, seed=0, hparams={"alpha": 1.0})
    axes = fig.axes
    assert len(axes) == 8  # 2 samples × (source A, source B, mask, mixed)
    assert [ax.get_title() for ax in axes[:4]] == ["source A", "source B", "mask (weight of A)", "mixed"]
    assert axes[2].images and axes[3].get_xlabel().startswith("λ = ")
    assert fig.get_suptitle() == "cutmix on synthetic, seed 0\nalpha=1.0, p=1.0, mode=batch, label_smoothing=0.0"
    # Partners are other images: their classes differ from the sources'.
    assert axes[0].get_xlabel() != axes[1].get_xlabel()


def test_a_method_without_a_mask_shows_a_dash():
    fig = show_method("mixup", n=2, seed=0)
    mask_axes = fig.axes[2::4]
    assert all(texts(ax) == ["–"] and not ax.images for ax in mask_axes)


class DisplayProbe(Method):
    """A model-aware method, as PuzzleMix or AutoMix would be: it needs the network to mix."""

    name = "display_probe"
    seen: dict = {}

    def setup(self, backbone: nn.Module, num_classes: int) -> None:
        super().setup(backbone, num_classes)
        self.seen["setup"] = (type(backbone).__name__, num_classes)

    def training_loss(self, backbone, x, y, gen):
        return StepOutput(loss=backbone(x).sum())

    def mix_for_display(self, backbone: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        gen: torch.Generator) -> MixedBatch:
        self.seen["call"] = (backbone.training, torch.is_grad_enabled(), tuple(x.shape), x.dtype, y.dtype)
        backbone(x).sum().backward()  # model-aware methods need input/parameter gradients
        index = torch.roll(torch.arange(x.shape[0]), 1)
        mask = torch.zeros(x.shape[0], 1, *x.shape[-2:])
        mask[..., : x.shape[-2] // 2, :] = 1
        return MixedBatch(x=mask * x + (1 - mask) * x[index], y_a=y, y_b=y[index], lam=mask.mean((1, 2, 3)),
                          mask=mask)


class NoDisplay(Method):
    name = "no_display"

    def training_loss(self, backbone, x, y, gen):
        return StepOutput(loss=backbone(x).sum())


@pytest.fixture
def probes(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, "display_probe", DisplayProbe)
    monkeypatch.setitem(registry._REGISTRY, "no_display", NoDisplay)
    DisplayProbe.seen.clear()


def test_model_aware_methods_get_a_random_backbone_through_mix_for_display(probes, tmp_path):
    out = write_gallery(tmp_path / "probe.png", "display_probe", n=3, backbone="resnet_tiny_cifar")
    assert out.read_bytes()[:8] == PNG
    assert DisplayProbe.seen["setup"] == ("CifarResNet", 10)
    assert DisplayProbe.seen["call"] == (True, True, (3, 3, 32, 32), torch.float32, torch.int64)
    assert DISPLAY_BACKBONE == "resnet18_cifar"


def test_a_method_that_cannot_show_says_so(probes, tmp_path, capsys):
    with pytest.raises(GalleryUnsupported, match=r"^method no_display cannot show mixed samples: it is not an "
                                                 r"InputMixer and has no mix_for_display\(backbone, x, y, gen\)"):
        show_method("no_display")
    assert main(["show", "no_display", "--out", str(tmp_path / "x.png")]) == 1
    assert "method no_display cannot show mixed samples" in capsys.readouterr().out
    assert not (tmp_path / "x.png").exists()


def test_cli_show(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["show", "mixup", "--out", str(out), "--seed", "1", "--n", "2", "--hparam", "alpha=1.0"]) == 0
    assert out.read_bytes()[:8] == PNG
    assert main(["show", "mixup", "--n", "11", "--out", str(out)]) == 2
    assert "synthetic has 10 classes" in capsys.readouterr().out


def test_fashion_mnist_gallery_is_grey(tmp_path):
    from mixbench.data import dataset_info

    root = dataset_info("fashion_mnist").default_root
    if not (root and (Path(root) / "t10k-images-idx3-ubyte.gz").exists()):
        pytest.skip(f"Fashion-MNIST is not installed at {root} (Debian package dataset-fashion-mnist)")
    fig = show_method("cutmix", dataset="fashion_mnist", n=2, hparams={"alpha": 1.0})
    assert fig.axes[0].images[0].get_array().ndim == 2  # one channel, shown in grey
