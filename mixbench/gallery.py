"""`mixbench show`: a gallery of mixed samples for any registered method, for a fixed seed.

One row per sample, four columns, as in the figures of the mixup papers: source A, source B (the partner it
is mixed with), the mask (the per-pixel weight of A, `MixedBatch.mask`; "–" for a method with one λ for the
whole image and no mask) and the mixed image with its λ.

How a method is asked for its mixed batch (the protocol; nothing is special-cased by method name):

1. an `InputMixer` is called as in training: `method(x, y, gen)`, i.e. `method.mix(x, y, **method.sample(n,
   gen))`;
2. any other method that defines `mix_for_display(backbone, x, y, gen) -> MixedBatch` is built, given a small
   randomly initialised backbone (`DISPLAY_BACKBONE`, or the method's class attribute `display_backbone`)
   with `method.setup(backbone, num_classes)` (as the engine does), and then
   called with that backbone (in train mode, gradients enabled), the normalised batch `x` (float N,C,H,W),
   its labels `y` (int64 N) and a seeded CPU `torch.Generator`. It returns the batch it would train on;
3. any other method cannot be shown: `GalleryUnsupported` says so in one line.

Images come from the dataset's validation split (`synthetic` needs no files), one per class, chosen by the
seed, normalised by `device_augment(info, train=False)` and shown un-normalised with the dataset's mean/std.
The partner of each sample is found by its label y_b, which is why the samples have distinct classes. The
first of up to `DRAWS` draws of the seeded generator in which every sample has a partner of another class is
shown (a permutation may pair a sample with itself, which shows nothing); a method that never mixes shows
its first draw.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from mixbench.methods.base import InputMixer, Method, MixedBatch

DISPLAY_BACKBONE = "resnet18_cifar"  # the small random network model-aware methods get
TITLE_WIDTH = 90  # characters per title line: what fits the 8-inch-wide figure at the default font size
DRAWS = 20


class GalleryUnsupported(ValueError):
    """The method offers no way to show its mixed samples."""


def can_show(method: Method) -> bool:
    return isinstance(method, InputMixer) or callable(getattr(method, "mix_for_display", None))


def unsupported(method: Method) -> GalleryUnsupported:
    return GalleryUnsupported(
        f"method {method.name or type(method).__name__} cannot show mixed samples: it is not an InputMixer and "
        f"has no mix_for_display(backbone, x, y, gen) -> MixedBatch")


def sample_batch(dataset: str, root: str | Path | None, n: int, seed: int,
                 image_size: int | None = None) -> tuple[Tensor, Tensor, list[str]]:
    """`n` validation images of distinct classes (uint8 N,C,H,W), their labels and the class names."""
    from mixbench.data import dataset_info, load_split

    info = dataset_info(dataset)
    split = load_split(dataset, root, "val", image_size=image_size or info.image_size, seed=seed)
    if n > len(split.classes):
        raise ValueError(f"--n {n}: {dataset} has {len(split.classes)} classes; the gallery shows one image per "
                         f"class, so that each mix's partner is known by its label")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed)).tolist()
    labels = split.targets
    picked: list[int] = []
    seen: set[int] = set()
    for index in order:
        label = int(labels[index])
        if label not in seen:
            seen.add(label)
            picked.append(index)
            if len(picked) == n:
                break
    if len(picked) < n:
        raise ValueError(f"{dataset} val split holds only {len(picked)} classes; use --n {len(picked)} or fewer")
    images = torch.stack([split[i][0] for i in picked])
    return images, torch.as_tensor([int(labels[i]) for i in picked]), list(split.classes)


def mix_batch(method: Method, x: Tensor, y: Tensor, gen: torch.Generator,
              backbone: nn.Module | None = None) -> MixedBatch:
    """One draw of the method on (x, y), through the protocol of the module docstring."""
    if isinstance(method, InputMixer):
        with torch.no_grad():
            return method(x, y, gen)
    if not can_show(method):
        raise unsupported(method)
    if backbone is None:
        raise ValueError(f"method {method.name} mixes with a model's help; pass the backbone it was set up with")
    return method.mix_for_display(backbone, x, y, gen)


def show_method(
    name: str,
    dataset: str = "synthetic",
    data_root: str | Path | None = None,
    seed: int = 0,
    n: int = 4,
    image_size: int | None = None,
    backbone: str | None = None,
    hparams: dict[str, Any] | None = None,
) -> Figure:
    """The gallery figure of method `name` on `n` images of `dataset`, for `seed`."""
    from mixbench.data import dataset_info, device_augment
    from mixbench.methods.cards import create_with_card

    info = dataset_info(dataset)
    size = image_size or info.image_size
    method = create_with_card(name, info.family, **(hparams or {}))
    # A method that runs on one kind of network only (TransMix: a ViT) names its own display network.
    backbone = backbone or getattr(method, "display_backbone", DISPLAY_BACKBONE)
    if not can_show(method):
        raise unsupported(method)  # before any data is read
    images, labels, classes = sample_batch(dataset, data_root, n, seed, size)
    x = device_augment(info, train=False, image_size=size)(images, None)
    network = None
    if not isinstance(method, InputMixer):
        from mixbench.models import create_backbone

        torch.manual_seed(seed)  # the random network is part of what the seed fixes
        # Not timm's zero-initialised residual branches: through the shortcuts alone a random ResNet's input
        # gradient lives on a stride-8 lattice, and PuzzleMix's transport leaves the blocks with no saliency empty.
        options = {"zero_init_last": False} if "resnet" in backbone or "resnext" in backbone else {}
        network = create_backbone(backbone, num_classes=info.num_classes, image_size=size, in_chans=info.in_chans,
                                  **options)
        method.setup(network, info.num_classes)
        network.train()
    gen = torch.Generator().manual_seed(seed)
    mixed = first_mixing_draw(method, x, labels, gen, network)
    # The hyper-parameters in the title explain the picture: CIFAR-family cards draw λ ~ Beta(0.2, 0.2) for
    # CutMix, so a λ near 0 or 1 is the typical draw, not a fault.
    settings = textwrap.fill(", ".join(f"{k}={v}" for k, v in method.hparams().items()), TITLE_WIDTH)
    title = (f"{name} on {dataset}, seed {seed}\n{settings}"
             + (f"\nmix made with a randomly initialised {backbone}" if network is not None else ""))
    return gallery_figure(x, labels, mixed, classes, info.mean, info.std, title)


def first_mixing_draw(method: Method, x: Tensor, y: Tensor, gen: torch.Generator,
                      backbone: nn.Module | None) -> MixedBatch:
    """The first of up to DRAWS draws in which every sample's partner is another image (else the first)."""
    first = None
    for _ in range(DRAWS):
        mixed = mix_batch(method, x, y, gen, backbone)
        if first is None:
            first = mixed
        if bool((mixed.y_b.cpu() != y).all()):
            return mixed
    return first


def unnormalise(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Normalised N,C,H,W back to [0, 1] for display."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x * s + m).clamp(0, 1)


def gallery_figure(x: Tensor, y: Tensor, mixed: MixedBatch, classes: list[str], mean: tuple[float, ...],
                   std: tuple[float, ...], title: str) -> Figure:
    """Rows: samples; columns: source A, source B, mask, mixed (with λ)."""
    n = x.shape[0]
    shown = unnormalise(x.detach().float().cpu(), mean, std)
    out = unnormalise(mixed.x.detach().float().cpu(), mean, std)
    y_b = mixed.y_b.detach().cpu()
    partner = [int((y == y_b[i]).nonzero()[0]) for i in range(n)]
    lam = mixed.per_sample_lam().detach().float().cpu()
    mask = mixed.mask.detach().float().cpu() if mixed.mask is not None else None
    if mask is not None and mask.shape[-2:] != x.shape[-2:]:
        mask = F.interpolate(mask, size=x.shape[-2:], mode="nearest")

    fig = Figure(figsize=(8.0, 2.1 * n + 0.6), layout="constrained")
    axes = fig.subplots(n, 4, squeeze=False)
    for col, heading in enumerate(("source A", "source B", "mask (weight of A)", "mixed")):
        axes[0, col].set_title(heading, fontsize=10, fontweight="bold")
    for i in range(n):
        a, b = int(y[i]), int(y_b[i])
        _image(axes[i, 0], shown[i], classes[a])
        _image(axes[i, 1], shown[partner[i]], classes[b])
        if mask is not None:
            axes[i, 2].imshow(mask[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[i, 2].set_xlabel(f"mean {float(mask[i].mean()):.2f}", fontsize=8)
        else:
            axes[i, 2].text(0.5, 0.5, "–", ha="center", va="center", fontsize=28)
            axes[i, 2].set_xlabel("no mask: one λ per image", fontsize=8)
        _image(axes[i, 3], out[i], f"λ = {float(lam[i]):.2f}")
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title)
    return fig


def _image(ax, image: Tensor, caption: str) -> None:
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())
    ax.set_xlabel(caption, fontsize=8)


def write_gallery(out: Path, name: str, **options: Any) -> Path:
    """Save the gallery of method `name` to `out` (its suffix picks the format: .png, .pdf, ...)."""
    fig = show_method(name, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    return out
