"""`mixbench show`: a gallery of mixed samples for any registered method, for a fixed seed.

One row per sample, as in the figures of the mixup papers: source A, source B (the partner it is mixed with),
then for each mixing ratio the mask (the per-pixel weight of A, `MixedBatch.mask`; "–" for a method with one λ
for the whole image and no mask) and the mixed image. Under the mix: λ, the weight of A in the *label*, and,
where it differs, the mask's mean (A's share of the *pixels*); the method's `lam_note` says why they differ.

How a method is asked for its mixed batch (the protocol; nothing is special-cased by method name):

1. an `InputMixer` is called as in training: `method.mix(x, y, **method.sample(n, gen))`; a fixed λ (`lams`,
   `--lam`) replaces the draw's "lam" entry;
2. any other method that defines `mix_for_display(backbone, x, y, gen[, lam]) -> MixedBatch` is called with a
   backbone (train mode, gradients enabled), the normalised batch `x` (float N,C,H,W), its labels `y` (int64 N)
   and a seeded CPU `torch.Generator`; it returns the batch it would train on, at ratio `lam` if given. If its
   class sets `mixes_with_model` (PuzzleMix, AutoMix) the backbone is a trained one, never a random one: a
   trial's (`trial_dir`, `--from`) or a small display network trained for the picture (`mixbench.display`) on
   `DISPLAY_BACKBONE`, or the network the method's class names in `display_backbone`, built with its
   `display_backbone_kwargs` (TransMix: a ViT with 4-px patches, as its suites use);
3. any other method cannot be shown: `GalleryUnsupported` says so in one line.

Images come from the dataset's validation split (`synthetic` needs no files), one per class, chosen by the
seed, normalised by `device_augment(info, train=False)` with the dataset's own mean/std and channel count, at
the smallest size from the dataset's own up that the method accepts (`Method.check_input`; Fashion-MNIST's
28 px becomes 32 for PuzzleMix's grids, as in the suites). The partner of each sample is found by its label
y_b, which is why the samples have distinct classes. The first of up to `DRAWS` draws of the seeded generator
in which every sample has a partner of another class is shown (a permutation may pair a sample with itself,
which shows nothing), the same draw for every fixed λ, so the columns differ by λ alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from mixbench.display import (
    DEFAULT_BUDGET,
    DISPLAY_BACKBONE,
    DisplayBudget,
    display_network,
    from_trial,
    method_hparams,
)
from mixbench.figures import save, wrap_title
from mixbench.methods.base import InputMixer, Method, MixedBatch

__all__ = ["DISPLAY_BACKBONE", "GalleryUnsupported", "can_show", "show_method", "write_all", "write_gallery"]

DRAWS = 20
COLUMN_WIDTH = 2.0  # inches per image column
LAM_DIFFERS = 0.005  # |λ - mask mean| above which the caption gives both


class GalleryUnsupported(ValueError):
    """The method offers no way to show its mixed samples (or to fix its λ)."""


def can_show(method: Method) -> bool:
    return isinstance(method, InputMixer) or callable(getattr(method, "mix_for_display", None))


def can_fix_lam(method: Method, x: Tensor, gen: torch.Generator) -> bool:
    """Whether the method's mixing ratio can be fixed: an input mixer whose draw has a "lam", or a
    `mix_for_display` that takes `lam`. Draws from a copy of `gen`, so the caller's stream is untouched."""
    if isinstance(method, InputMixer):
        probe = torch.Generator().manual_seed(0)
        probe.set_state(gen.get_state())
        return "lam" in method.sample(x.shape[0], probe)
    return "lam" in inspect.signature(method.mix_for_display).parameters


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


def display_backbone(method: Method, asked: str | None = None) -> tuple[str, dict[str, Any]]:
    """The display network's name and timm kwargs: `asked` (--backbone) as it is, else the one the method's class
    names (a method that runs on one kind of network only; TransMix: a ViT), else `DISPLAY_BACKBONE`."""
    if asked is not None:
        return asked, {}
    cls = type(method)
    return getattr(cls, "display_backbone", DISPLAY_BACKBONE), dict(getattr(cls, "display_backbone_kwargs", {}))


def display_size(method: Method, native: int, backbone: str, asked: int | None = None, in_chans: int = 3,
                 backbone_kwargs: dict[str, Any] | None = None) -> int:
    """The image size to show the method at: `asked` if given (it must suit the method and the backbone), else the
    smallest size from the dataset's `native` one up to 4× that both accept, as a suite's recipe.image_size would
    be (Fashion-MNIST's 28 px: 32 for PuzzleMix's grids and for a ViT's 16-px patches)."""
    if asked is not None:
        method.check_input((asked, asked), backbone)
        why = _backbone_refuses(backbone, asked, in_chans, backbone_kwargs)
        if why:
            raise ValueError(f"--image-size {asked}: {backbone} cannot take {asked}-px images ({why}); fix: another "
                             f"--image-size")
        return asked
    for size in range(native, 4 * native + 1):
        try:
            method.check_input((size, size), backbone)
        except ValueError:
            continue
        if not _backbone_refuses(backbone, size, in_chans, backbone_kwargs):
            return size
    try:
        method.check_input((native, native), backbone)
    except ValueError as err:
        raise ValueError(f"{err}; or pass --image-size") from None
    raise ValueError(f"{backbone} takes no image size from {native} to {4 * native} px; fix: pass --image-size")


def _backbone_refuses(backbone: str, size: int, in_chans: int, kwargs: dict[str, Any] | None = None) -> str | None:
    """Why `backbone` cannot run on size × size images (a ViT's patches must divide them), or None; built and run
    on the meta device, so it costs no memory and no time."""
    from mixbench.models import create_backbone

    with torch.device("meta"):
        try:
            model = create_backbone(backbone, num_classes=10, image_size=size, in_chans=in_chans,
                                    **(kwargs or {})).eval()
            model(torch.empty(2, in_chans, size, size))  # eval: batch norm on a 1×1 map is fine there
        except (AssertionError, RuntimeError, ValueError) as err:
            return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def mix_batch(method: Method, x: Tensor, y: Tensor, gen: torch.Generator, backbone: nn.Module | None = None,
              lam: float | None = None) -> MixedBatch:
    """One draw of the method on (x, y), through the protocol of the module docstring, at ratio `lam` if given."""
    if isinstance(method, InputMixer):
        drawn = method.sample(x.shape[0], gen)
        if lam is not None:
            if "lam" not in drawn:
                raise GalleryUnsupported(f"--lam: method {method.name} draws no λ (its sample() has no 'lam'), "
                                         f"so there is no mixing ratio to fix; drop --lam")
            drawn["lam"] = torch.full_like(drawn["lam"], float(lam))
        with torch.no_grad():
            return method.mix(x, y, **drawn)
    if not can_show(method):
        raise unsupported(method)
    if backbone is None:
        raise ValueError(f"method {method.name} mixes with a model's help; pass the backbone it was set up with")
    if lam is None:
        return method.mix_for_display(backbone, x, y, gen)
    if "lam" not in inspect.signature(method.mix_for_display).parameters:
        raise GalleryUnsupported(f"--lam: method {method.name}'s mix_for_display takes no lam, so its mixing ratio "
                                 f"cannot be fixed; drop --lam")
    return method.mix_for_display(backbone, x, y, gen, lam=lam)


def show_method(
    name: str,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    seed: int = 0,
    n: int = 4,
    image_size: int | None = None,
    backbone: str | None = None,
    hparams: dict[str, Any] | None = None,
    lams: Sequence[float] | None = None,
    trial_dir: str | Path | None = None,
    cache_dir: Path | None = None,
    budget: DisplayBudget = DEFAULT_BUDGET,
    log: Callable[[str], None] | None = None,
) -> Figure:
    """The gallery figure of method `name` on `n` images of `dataset` (default: synthetic, or the trial's), for
    `seed`, at the fixed ratios `lams` (default: one draw of the method's own λ)."""
    from mixbench.data import dataset_info, device_augment
    from mixbench.methods.registry import create_method

    for lam in lams or []:
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"--lam {lam:g}: a mixing ratio is the weight of A, in [0, 1]; e.g. --lam 0.3,0.5,0.7")
    network, backbone_kwargs = None, {}
    if trial_dir is not None:
        network = from_trial(trial_dir, name, hparams, data_root=data_root)
        if dataset is not None and dataset != network.dataset:
            raise ValueError(f"--from {trial_dir}: that trial trained on {network.dataset}, not {dataset}; fix: drop "
                             f"--dataset (the gallery then shows {network.dataset}) or pass a {dataset} trial")
        dataset, data_root, method = network.dataset, network.data_root, network.method
        size = display_size(method, network.image_size, network.backbone_name, image_size,
                            dataset_info(dataset).in_chans)
    else:
        dataset = dataset or "synthetic"
        info = dataset_info(dataset)
        method = create_method(name, **method_hparams(name, dataset, hparams))
        backbone, backbone_kwargs = display_backbone(method, backbone)
        if not can_show(method):
            raise unsupported(method)  # before any data is read or any network trained
        size = display_size(method, info.image_size, backbone, image_size, info.in_chans, backbone_kwargs)
        if method.mixes_with_model:
            network = display_network(name, dataset, data_root, seed, size, hparams, backbone, budget, cache_dir, log,
                                      backbone_kwargs)
            method = network.method
    if not can_show(method):
        raise unsupported(method)
    info = dataset_info(dataset)
    images, labels, classes = sample_batch(dataset, data_root, n, seed, size)
    x = device_augment(info, train=False, image_size=size)(images, None)
    net = network.backbone if network is not None else None
    if net is None and not isinstance(method, InputMixer):
        # A picture that needs no learned network (ManifoldMix, RecursiveMix) still gets one set up, as training
        # would give it; random weights, fixed by the seed, since nothing shown depends on them.
        from mixbench.models import create_backbone

        torch.manual_seed(seed)
        net = create_backbone(backbone, num_classes=info.num_classes, image_size=size, in_chans=info.in_chans,
                              **backbone_kwargs)
        method.setup(net, info.num_classes)
        net.train()
    gen = torch.Generator().manual_seed(seed)
    state = first_mixing_state(method, x, labels, gen, net)
    if lams and not can_fix_lam(method, x, gen):
        raise GalleryUnsupported(f"--lam: method {name} has no mixing ratio to fix (it draws no λ); drop --lam")
    columns = []
    for lam in lams or [None]:
        gen.set_state(state)  # every λ with the same partners and the same other draws
        columns.append((lam, mix_batch(method, x, labels, gen, net, lam)))
    settings = ", ".join(f"{k}={v}" for k, v in method.hparams().items())
    title = f"{name} on {dataset} ({size} px), seed {seed}\n{settings}"
    notes = ["λ: the weight of A in the label. mask: the weight of A per pixel; its mean is A's share of the pixels."]
    if lams:
        notes.append(f"λ fixed at {', '.join(f'{v:g}' for v in lams)} (--lam); partners and every other draw are "
                     f"the same in each column.")
    realised = any(asked is not None and _realised_differs(mixed, asked) for asked, mixed in columns)
    if realised and not type(method).lam_note:
        notes.append("Where λ is not the asked one the method set it from what it drew (e.g. CutMix: a box clipped "
                     "at the image border keeps more of A).")
    if (realised or any(_lam_differs(mixed) for _, mixed in columns)) and type(method).lam_note:
        notes.append(type(method).lam_note)
    if network is not None:
        notes.append(network.caption + ".")
    return gallery_figure(x, labels, columns, classes, info.mean, info.std, title, " ".join(notes))


def first_mixing_state(method: Method, x: Tensor, y: Tensor, gen: torch.Generator,
                       backbone: nn.Module | None) -> Tensor:
    """The generator state before the first of up to DRAWS draws in which every sample's partner is another
    image (else before the first draw)."""
    first = gen.get_state()
    for _ in range(DRAWS):
        state = gen.get_state()
        mixed = mix_batch(method, x, y, gen, backbone)
        if bool((mixed.y_b.cpu() != y).all()):
            return state
    return first


def unnormalise(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Normalised N,C,H,W back to [0, 1] for display."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x * s + m).clamp(0, 1)


def _mask(mixed: MixedBatch, size: tuple[int, int]) -> Tensor | None:
    if mixed.mask is None:
        return None
    mask = mixed.mask.detach().float().cpu()
    return F.interpolate(mask, size=size, mode="nearest") if mask.shape[-2:] != size else mask


def _realised_differs(mixed: MixedBatch, asked: float) -> bool:
    return bool(((mixed.per_sample_lam().detach().float().cpu() - asked).abs() > LAM_DIFFERS).any())


def _lam_differs(mixed: MixedBatch) -> bool:
    if mixed.mask is None:
        return False
    means = mixed.mask.detach().float().cpu().mean(dim=(1, 2, 3))
    return bool(((means - mixed.per_sample_lam().detach().float().cpu()).abs() > LAM_DIFFERS).any())


def gallery_figure(x: Tensor, y: Tensor, columns: list[tuple[float | None, MixedBatch]], classes: list[str],
                   mean: tuple[float, ...], std: tuple[float, ...], title: str, note: str = "") -> Figure:
    """Rows: samples; columns: source A, source B, then a mask and a mix for each (asked λ, mixed batch)."""
    n = x.shape[0]
    shown = unnormalise(x.detach().float().cpu(), mean, std)
    width = COLUMN_WIDTH * (2 + 2 * len(columns))
    fig = Figure(figsize=(width, 2.1 * n + 1.2), layout="constrained")
    axes = fig.subplots(n, 2 + 2 * len(columns), squeeze=False)
    axes[0, 0].set_title("source A", fontsize=10, fontweight="bold")
    axes[0, 1].set_title("source B", fontsize=10, fontweight="bold")
    for k, (asked, _) in enumerate(columns):
        at = "" if asked is None else f"\nλ asked {asked:g}"
        axes[0, 2 + 2 * k].set_title(f"mask (weight of A){at}", fontsize=10, fontweight="bold")
        axes[0, 3 + 2 * k].set_title(f"mixed{at}", fontsize=10, fontweight="bold")
    y_b = columns[0][1].y_b.detach().cpu()
    for i in range(n):
        a, b = int(y[i]), int(y_b[i])
        partner = int((y == y_b[i]).nonzero()[0])
        _image(axes[i, 0], shown[i], classes[a])
        _image(axes[i, 1], shown[partner], classes[b])
    for k, (_, mixed) in enumerate(columns):
        out = unnormalise(mixed.x.detach().float().cpu(), mean, std)
        lam = mixed.per_sample_lam().detach().float().cpu()
        mask = _mask(mixed, tuple(x.shape[-2:]))
        for i in range(n):
            mask_ax, mix_ax = axes[i, 2 + 2 * k], axes[i, 3 + 2 * k]
            caption = f"λ = {float(lam[i]):.2f} (label weight)"
            if mask is not None:
                share = float(mask[i].mean())
                mask_ax.imshow(mask[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
                mask_ax.set_xlabel(f"mean {share:.2f}", fontsize=8)
                if abs(share - float(lam[i])) > LAM_DIFFERS:
                    caption += f"\nmask mean {share:.2f} ≠ λ"
            else:
                mask_ax.text(0.5, 0.5, "–", ha="center", va="center", fontsize=28)
                mask_ax.set_xlabel("no mask: one λ per image", fontsize=8)
            _image(mix_ax, out[i], caption)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(wrap_title(title, width, 12))
    if note:
        fig.supxlabel(wrap_title(note, width, 9), fontsize=9, ha="left", x=0.01)
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
    return save(fig, Path(out), dpi=120)


def write_all(out_dir: Path, log: Callable[[str], None] = print, **options: Any) -> dict[str, str]:
    """`out_dir/METHOD.png` for every registered method; returns {method: why it was not drawn} for the others.

    A method whose λ cannot be fixed (vanilla) is drawn with its own draw when `lams` is given, and says so.
    """
    from mixbench.methods.registry import list_methods

    skipped: dict[str, str] = {}
    for name in list_methods():
        out = Path(out_dir) / f"{name}.png"
        try:
            try:
                write_gallery(out, name, log=log, **options)
            except GalleryUnsupported as err:
                if not options.get("lams") or not str(err).startswith("--lam"):
                    raise
                log(f"{name}: {err}; drawn with its own λ")
                write_gallery(out, name, log=log, **{**options, "lams": None})
        except Exception as err:  # one method that cannot be drawn (or whose network fails) must not stop the rest
            skipped[name] = f"{type(err).__name__}: {err}" if not isinstance(err, ValueError) else str(err)
            log(f"{name}: not drawn: {err}")
            continue
        log(f"{name}: {out}")
    return skipped
