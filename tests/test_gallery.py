"""`mixbench show`: a gallery for every registered method, trained networks for model-aware ones, fixed λ,
dataset-aware sizes and channels, the protocol for plug-ins, and every picture checked as a reader meets it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from mixbench.cli import main
from mixbench.display import DisplayBudget, DisplayNetworkError, display_trial, from_trial
from mixbench.figures import text_outside_canvas
from mixbench.gallery import GalleryUnsupported, show_method, write_all, write_gallery
from mixbench.methods import registry
from mixbench.methods.base import InputMixer, Method, MixedBatch, StepOutput
from mixbench.methods.registry import UnknownMethodError, get_method_class, list_methods

PNG = b"\x89PNG\r\n\x1a\n"
# A display network in seconds: a few steps on the synthetic shapes, enough for saliency and Mix Block to vary.
TINY = DisplayBudget(steps=12, batch_size=16, epochs=1, val_images=20)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One display-network cache for the module: each method's network is trained once."""
    return tmp_path_factory.mktemp("display-cache")


def registered_methods() -> list:
    """Every registered method. One that cannot be imported (an optional dependency, or not written yet) is
    skipped with the reason. One that mixes with a model trains a (tiny) network first, so it is marked slow;
    until it implements the gallery's protocol, `mix_for_display`, it is an expected failure that says so."""
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
def test_every_registered_method_has_a_gallery_with_all_its_text_on_the_canvas(name, cache, tmp_path):
    fig = show_method(name, n=3, seed=0, budget=TINY, cache_dir=cache)
    assert text_outside_canvas(fig) == []
    assert write_gallery(tmp_path / f"{name}.png", name, n=3, seed=0, budget=TINY, cache_dir=cache).read_bytes()[
        :8] == PNG


def mask_variation(fig) -> list[float]:
    """Per row, the spread (max - min) of the mask in the third column (rows of 4 axes: A, B, mask, mix)."""
    return [float(ax.images[0].get_array().max() - ax.images[0].get_array().min()) for ax in fig.axes[2::4]]


@pytest.mark.slow
def test_puzzlemix_mixes_with_a_trained_network_and_its_masks_vary(cache):
    """With a random network every PuzzleMix mask is all 1, all 0.5 or all 0 (flat saliency)."""
    fig = show_method("puzzlemix", n=4, seed=0, budget=TINY, cache_dir=cache)
    note = fig.get_supxlabel().replace("\n", " ")
    assert "mixed with a display network: resnet_tiny_cifar trained by puzzlemix for 12 steps of 16" in note
    spreads = mask_variation(fig)
    assert len(spreads) == 4 and sum(s > 0 for s in spreads) >= 2, spreads


@pytest.mark.slow
def test_automix_mixes_with_the_mix_block_of_its_checkpoint(cache, tmp_path):
    """A Mix Block a few steps old still draws near-uniform masks; one whose weights make sharp masks, put in a
    trial's checkpoint, must be the one the gallery uses (AutoMix's masks come from its own weights)."""
    show_method("automix", n=2, seed=0, budget=TINY, cache_dir=cache)
    trained = next(p for p in cache.iterdir() if "-automix-" in p.name)
    assert max(mask_variation(show_method("automix", n=4, trial_dir=trained))) < 0.05
    sharp = tmp_path / trained.name
    sharp.mkdir()
    (sharp / "config.yaml").write_text((trained / "config.yaml").read_text())
    state = torch.load(trained / "last.pt", weights_only=False)
    state["method"] = {k: v * 1000 if k.startswith("mix_block.") else v for k, v in state["method"].items()}
    torch.save(state, sharp / "last.pt")
    spreads = mask_variation(show_method("automix", n=4, trial_dir=sharp))
    assert sum(s > 0.1 for s in spreads) >= 2, spreads


@pytest.mark.slow
def test_the_display_network_is_cached_by_its_trial_id(cache, monkeypatch):
    show_method("puzzlemix", n=2, seed=0, budget=TINY, cache_dir=cache)
    config = display_trial("puzzlemix", "synthetic", None, 0, 32, budget=TINY)
    assert (cache / config.dirname / "last.pt").is_file()
    assert not list(cache.glob(".partial-*"))  # trained aside, then renamed into place
    import mixbench.engine

    monkeypatch.setattr(mixbench.engine, "run_trial", lambda *a, **k: pytest.fail("trained again"))
    show_method("puzzlemix", n=2, seed=0, budget=TINY, cache_dir=cache)
    other = display_trial("puzzlemix", "synthetic", None, 1, 32, budget=TINY)
    assert other.dirname != config.dirname  # another seed, another network


@pytest.mark.slow
def test_from_a_trial_uses_its_checkpoint_and_says_so(cache, tmp_path):
    show_method("automix", n=2, seed=0, budget=TINY, cache_dir=cache)
    trial = next(p for p in cache.iterdir() if "-automix-" in p.name)
    fig = show_method("automix", n=2, trial_dir=trial)
    assert f"mixed with the network of trial {trial.name}: resnet_tiny_cifar trained by automix for 1/1 epochs" in (
        fig.get_supxlabel().replace("\n", " "))
    # PuzzleMix has no weights of its own: it may borrow the backbone of any trial.
    assert show_method("puzzlemix", n=2, trial_dir=trial).axes
    with pytest.raises(ValueError, match=r"that trial trained on synthetic, not fashion_mnist; fix: drop --dataset"):
        show_method("automix", dataset="fashion_mnist", trial_dir=trial)


def test_from_a_folder_that_is_no_trial_says_what_to_pass(tmp_path, cache):
    with pytest.raises(DisplayNetworkError, match=r"^--from .*: no config\.yaml there; fix: pass a trial folder"):
        from_trial(tmp_path, "puzzlemix")
    config = display_trial("puzzlemix", "synthetic", None, 0, 32, budget=TINY)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    with pytest.raises(DisplayNetworkError, match=r"no checkpoint last\.pt \(the trial has not finished an epoch\)"):
        from_trial(tmp_path, "puzzlemix")


@pytest.mark.slow
def test_a_method_with_weights_of_its_own_needs_its_own_trial(cache):
    show_method("puzzlemix", n=2, seed=0, budget=TINY, cache_dir=cache)
    trial = next(p for p in cache.iterdir() if "-puzzlemix-" in p.name)
    with pytest.raises(DisplayNetworkError, match=r"automix mixes with weights of its own \(.*mix_block.*\) that a "
                                                  r"puzzlemix trial never trained; fix: pass a automix trial"):
        from_trial(trial, "automix")


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
    assert axes[2].images and axes[3].get_xlabel().startswith("λ = ") and "(label weight)" in axes[3].get_xlabel()
    assert fig.get_suptitle() == ("cutmix on synthetic (32 px), seed 0\n"
                                  "alpha=1.0, p=1.0, mode=batch, label_smoothing=0.0")
    # Partners are other images: their classes differ from the sources'.
    assert axes[0].get_xlabel() != axes[1].get_xlabel()


def test_a_method_without_a_mask_shows_a_dash():
    fig = show_method("mixup", n=2, seed=0)
    mask_axes = fig.axes[2::4]
    assert all(texts(ax) == ["–"] and not ax.images for ax in mask_axes)


def test_fixed_lambdas_side_by_side_with_the_same_partners():
    fig = show_method("mixup", n=2, seed=0, lams=[0.3, 0.5, 0.7])
    axes = fig.axes
    assert len(axes) == 2 * (2 + 2 * 3)
    assert [ax.get_title() for ax in axes[2:8]] == [
        "mask (weight of A)\nλ asked 0.3", "mixed\nλ asked 0.3", "mask (weight of A)\nλ asked 0.5",
        "mixed\nλ asked 0.5", "mask (weight of A)\nλ asked 0.7", "mixed\nλ asked 0.7"]
    assert [axes[i].get_xlabel() for i in (3, 5, 7)] == [f"λ = {v} (label weight)" for v in ("0.30", "0.50", "0.70")]
    # The mix at λ is λ·A + (1-λ)·B for the same partner B in every column: the pixels interpolate linearly.
    mixes = [torch.as_tensor(axes[i].images[0].get_array()) for i in (3, 5, 7)]
    assert torch.allclose(mixes[1], (mixes[0] + mixes[2]) / 2, atol=1e-5)
    assert "λ fixed at 0.3, 0.5, 0.7 (--lam)" in fig.get_supxlabel().replace("\n", " ")


def test_a_realised_lambda_that_differs_from_the_asked_one_is_explained():
    fig = show_method("cutmix", n=2, seed=0, lams=[0.3])
    captions = [fig.axes[i].get_xlabel() for i in (3, 7)]
    assert any(c != "λ = 0.30 (label weight)" for c in captions)  # a box clipped at the border keeps more of A
    assert "CutMix: a box clipped at the image border keeps more of A" in fig.get_supxlabel().replace("\n", " ")


@pytest.mark.slow
def test_automix_captions_the_mask_mean_where_it_is_not_lambda(cache):
    fig = show_method("automix", n=2, seed=0, lams=[0.3], budget=TINY, cache_dir=cache)
    assert fig.axes[3].get_xlabel().startswith("λ = 0.30 (label weight)\nmask mean ")
    note = fig.get_supxlabel().replace("\n", " ")
    assert "AutoMix's labels use the drawn λ, while the Mix Block's mask is only pulled towards it" in note


def test_lambda_out_of_range_or_not_drawn_is_refused(capsys, tmp_path):
    with pytest.raises(ValueError, match=r"^--lam 1\.5: a mixing ratio is the weight of A, in \[0, 1\]"):
        show_method("mixup", lams=[1.5])
    with pytest.raises(GalleryUnsupported, match=r"^--lam: method vanilla has no mixing ratio to fix"):
        show_method("vanilla", lams=[0.5])
    assert main(["show", "mixup", "--lam", "0.3,x", "--out", str(tmp_path / "x.png")]) == 2
    assert "--lam 0.3,x: expected mixing ratios in [0, 1], e.g. --lam 0.3,0.5,0.7" in capsys.readouterr().out


def test_fashion_mnist_is_grey_at_its_own_size_or_the_one_the_method_needs():
    from mixbench.data import dataset_info

    root = dataset_info("fashion_mnist").default_root
    if not (root and (Path(root) / "t10k-images-idx3-ubyte.gz").exists()):
        pytest.skip(f"Fashion-MNIST is not installed at {root} (Debian package dataset-fashion-mnist)")
    fig = show_method("cutmix", dataset="fashion_mnist", n=2, hparams={"alpha": 1.0})
    assert fig.axes[0].images[0].get_array().shape == (28, 28)  # one channel, shown in grey, at 28 px
    assert fig.axes[3].images[0].get_array().shape == (28, 28)
    assert text_outside_canvas(fig) == []


@pytest.mark.slow
def test_fashion_mnist_puzzlemix_uses_its_statistics_and_a_size_its_grids_divide(cache):
    from mixbench.data import dataset_info

    root = dataset_info("fashion_mnist").default_root
    if not (root and (Path(root) / "t10k-images-idx3-ubyte.gz").exists()):
        pytest.skip(f"Fashion-MNIST is not installed at {root} (Debian package dataset-fashion-mnist)")
    fig = show_method("puzzlemix", dataset="fashion_mnist", n=2, budget=TINY, cache_dir=cache)
    assert fig.get_suptitle().startswith("puzzlemix on fashion_mnist (32 px), seed 0\n")  # 28 -> 32, as the suite
    assert "mean=[0.286], std=[0.353]" in fig.get_suptitle().replace("\n", " ")
    assert fig.axes[3].images[0].get_array().shape == (32, 32)


def test_an_image_size_the_method_cannot_take_says_the_fix():
    with pytest.raises(ValueError, match=r"PuzzleMix at 28×28 px with a 16×16 grid: the image does not divide"):
        show_method("puzzlemix", image_size=28)


class DisplayProbe(Method):
    """A model-aware method, as PuzzleMix or AutoMix would be: it needs the network to mix."""

    name = "display_probe"
    seen: dict = {}

    def setup(self, backbone: nn.Module, num_classes: int) -> None:
        super().setup(backbone, num_classes)
        self.seen["setup"] = (type(backbone).__name__, num_classes)

    def training_loss(self, backbone, x, y, gen):
        self.seen["trained"] = True
        return StepOutput(loss=nn.functional.cross_entropy(backbone(x), y))

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


def test_model_aware_plugins_get_a_trained_backbone_through_mix_for_display(probes, tmp_path):
    out = write_gallery(tmp_path / "probe.png", "display_probe", n=3, backbone="test_resnet",
                        budget=DisplayBudget(steps=2, batch_size=8, epochs=1, val_images=10), cache_dir=tmp_path)
    assert out.read_bytes()[:8] == PNG
    assert DisplayProbe.seen["trained"] and DisplayProbe.seen["setup"] == ("ResNet", 10)
    assert DisplayProbe.seen["call"] == (True, True, (3, 3, 32, 32), torch.float32, torch.int64)
    with pytest.raises(GalleryUnsupported, match=r"^--lam: method display_probe has no mixing ratio to fix"):
        show_method("display_probe", lams=[0.5], backbone="test_resnet",
                    budget=DisplayBudget(steps=2, batch_size=8, epochs=1, val_images=10), cache_dir=tmp_path)


def test_a_method_that_cannot_show_says_so(probes, tmp_path, capsys):
    with pytest.raises(GalleryUnsupported, match=r"^method no_display cannot show mixed samples: it is not an "
                                                 r"InputMixer and has no mix_for_display\(backbone, x, y, gen\)"):
        show_method("no_display")
    assert main(["show", "no_display", "--out", str(tmp_path / "x.png")]) == 1
    assert "method no_display cannot show mixed samples" in capsys.readouterr().out
    assert not (tmp_path / "x.png").exists()


def test_cli_show(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["show", "mixup", "--out", str(out), "--seed", "1", "--n", "2", "--hparam", "alpha=1.0",
                 "--lam", "0.3,0.7"]) == 0
    assert out.read_bytes()[:8] == PNG
    assert main(["show", "mixup", "--n", "11", "--out", str(out)]) == 2
    assert "synthetic has 10 classes" in capsys.readouterr().out
    assert main(["show", "--out", str(out)]) == 2
    assert "show: name one METHOD, or --all for every registered method" in capsys.readouterr().out


def test_cli_show_all_writes_one_gallery_per_method(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(registry, "list_methods", lambda: ["cutmix", "mixup", "vanilla"])
    assert main(["show", "--all", "--out", str(tmp_path / "gallery"), "--n", "2", "--lam", "0.4"]) == 0
    assert sorted(p.name for p in (tmp_path / "gallery").iterdir()) == ["cutmix.png", "mixup.png", "vanilla.png"]
    assert "vanilla: --lam: method vanilla has no mixing ratio to fix" in capsys.readouterr().out


def test_write_all_reports_the_methods_it_could_not_draw(probes, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "list_methods", lambda: ["mixup", "no_display"])
    skipped = write_all(tmp_path, log=lambda line: None, n=2)
    assert list(skipped) == ["no_display"] and (tmp_path / "mixup.png").is_file()


def test_the_size_is_the_first_the_method_and_the_backbone_both_take():
    from mixbench.gallery import display_size
    from mixbench.methods import create_method

    assert display_size(create_method("mixup"), 28, "resnet_tiny_cifar", in_chans=1) == 28
    assert display_size(create_method("mixup"), 28, "test_vit", in_chans=1) == 32  # 16-px patches
    assert display_size(create_method("mixup"), 32, "test_resnet") == 32  # a 1×1 map at the end is fine
    with pytest.raises(ValueError, match=r"^--image-size 28: test_vit cannot take 28-px images \(.*\); fix: another "
                                         r"--image-size"):
        display_size(create_method("mixup"), 28, "test_vit", asked=28, in_chans=1)
