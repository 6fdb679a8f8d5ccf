"""The dataset table: what mixbench knows about each dataset, and `load_split` to read one split of it.

Every row names the reader for its on-disk layout (one module per layout in this package). Readers all
take `(info, root, split, *, image_size, limit_per_class, seed)` and return a `MixDataset`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mixbench.data import cifar, cub, idx, imagefolder, inaturalist, places205, synthetic, tiny_imagenet
from mixbench.data.dataset import MixDataset

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    family: str  # method-card family: "cifar", "tiny" or "imagenet"
    num_classes: int  # size of the classifier head; labels on disk are always below it
    image_size: int  # default train resolution
    in_chans: int
    mean: tuple[float, ...]  # in [0, 1] units, one per channel
    std: tuple[float, ...]
    in_memory: bool  # the whole split is one uint8 tensor (no per-image decoding)
    default_root: str | None
    expected_counts: dict[str, int]  # full-size image count per split, for a pre-flight check


Reader = Callable[..., MixDataset]


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    read: Reader
    test_is_val: bool  # the dataset's own name for its labelled held-out split is "test"
    needs_root: bool = True


def _entry(read: Reader, test_is_val: bool, needs_root: bool = True, **fields) -> _Entry:
    return _Entry(DatasetInfo(**fields), read, test_is_val, needs_root)


_TABLE: dict[str, _Entry] = {
    e.info.name: e
    for e in (
        _entry(cifar.read_cifar, True, name="cifar10", family="cifar", num_classes=10, image_size=32,
               in_chans=3, mean=CIFAR_MEAN, std=CIFAR_STD, in_memory=True, default_root=None,
               expected_counts={"train": 50_000, "val": 10_000}),
        _entry(cifar.read_cifar, True, name="cifar100", family="cifar", num_classes=100, image_size=32,
               in_chans=3, mean=CIFAR_MEAN, std=CIFAR_STD, in_memory=True, default_root=None,
               expected_counts={"train": 50_000, "val": 10_000}),
        _entry(tiny_imagenet.read_tiny_imagenet, False, name="tiny_imagenet", family="tiny", num_classes=200,
               image_size=64, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, in_memory=False,
               default_root=None, expected_counts={"train": 100_000, "val": 10_000}),
        _entry(imagefolder.read_imagefolder, False, name="imagenet", family="imagenet", num_classes=1000,
               image_size=224, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, in_memory=False,
               default_root=None, expected_counts={"train": 1_281_167, "val": 50_000}),
        _entry(inaturalist.read_inat2018, False, name="inat2018", family="imagenet", num_classes=8142,
               image_size=224, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, in_memory=False,
               default_root=None, expected_counts={"train": 437_513, "val": 24_426}),
        # Train count from Zhou et al. (NeurIPS 2014); val is 100 per class. Not checked against the lists.
        _entry(places205.read_places205, False, name="places205", family="imagenet", num_classes=205,
               image_size=224, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, in_memory=False,
               default_root=None, expected_counts={"train": 2_448_873, "val": 20_500}),
        _entry(cub.read_cub, True, name="cub200", family="imagenet", num_classes=200, image_size=224,
               in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, in_memory=False, default_root=None,
               expected_counts={"train": 5_994, "val": 5_794}),
        _entry(idx.read_idx, True, name="fashion_mnist", family="cifar", num_classes=10, image_size=28,
               in_chans=1, mean=(0.2860,), std=(0.3530,), in_memory=True,
               default_root="/usr/share/datasets/fashion-mnist",
               expected_counts={"train": 60_000, "val": 10_000}),
        _entry(idx.read_idx, True, name="mnist", family="cifar", num_classes=10, image_size=28, in_chans=1,
               mean=(0.1307,), std=(0.3081,), in_memory=True, default_root=None,
               expected_counts={"train": 60_000, "val": 10_000}),
        _entry(synthetic.make_synthetic, False, needs_root=False, name="synthetic", family="cifar",
               num_classes=10, image_size=32, in_chans=3, mean=CIFAR_MEAN, std=CIFAR_STD, in_memory=True,
               default_root=None, expected_counts=dict(synthetic.SPLIT_SIZES)),
    )
}


def list_datasets() -> list[str]:
    return list(_TABLE)


def _entry_for(name: str) -> _Entry:
    try:
        return _TABLE[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(_TABLE)}") from None


def dataset_info(name: str) -> DatasetInfo:
    return _entry_for(name).info


def load_split(
    name: str,
    root: str | Path | None,
    split: str,
    *,
    image_size: int | None = None,
    limit_per_class: int | None = None,
    seed: int = 0,
) -> MixDataset:
    """One split ("train" or "val") of a dataset, read from `root` (None: the dataset's default root).

    `limit_per_class` keeps the first k images of each class in file order; `seed` only matters for
    `synthetic`. `image_size` sets the resolution the file datasets' PIL transforms produce (in-memory
    datasets keep their native size; `device_augment` resizes them).
    """
    entry = _entry_for(name)
    info = entry.info
    aliases = {"train": "train", "val": "val", **({"test": "val"} if entry.test_is_val else {})}
    if split not in aliases:
        raise ValueError(f"{name}: unknown split {split!r}; use one of {', '.join(aliases)}")
    if limit_per_class is not None and limit_per_class <= 0:
        raise ValueError(f"{name}: limit_per_class must be positive, got {limit_per_class}")
    if image_size is not None and image_size <= 0:
        raise ValueError(f"{name}: image_size must be positive, got {image_size}")
    if root is None and info.default_root is not None:
        root = info.default_root
    if root is None and entry.needs_root:
        raise FileNotFoundError(f"{name}: no data root given; pass --data-root {name}=PATH "
                                f"(or set MIXBENCH_DATA_{name.upper()})")
    return entry.read(info, None if root is None else Path(root).expanduser(), aliases[split],
                      image_size=image_size or info.image_size, limit_per_class=limit_per_class, seed=seed)
