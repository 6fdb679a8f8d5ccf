"""The dataset registry: one `DatasetSpec` per dataset, declared in its reader's module, and `load_split`.

A spec is everything mixbench knows about a dataset: its `DatasetInfo` (classes, size, mean/std, card family),
its reader, how `mixbench check` names what it counted (the reader lists a split without decoding an image, and
check counts the labels it listed), its tiny-fixture writer (for `--tiny`), and its name in published claims.
Built-in readers register their specs with `register_dataset(SPEC)` when imported; every module of this package
is imported on the first lookup, so adding a built-in dataset is one new file. Plug-ins are `DatasetSpec` objects
named by the entry-point group `mixbench.datasets` (`flowers = "labpkg.flowers:SPEC"`) or by a suite's
`name: "labpkg.flowers:SPEC"`.

Readers all take `(info, root, split, *, image_size, limit_per_class, seed)` and return a `MixDataset`.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixbench.registry import Registry

if TYPE_CHECKING:
    from mixbench.data.dataset import MixDataset

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ENTRY_POINT_GROUP = "mixbench.datasets"


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
    transforms: str | None = None  # PIL preset of a file dataset ("tiny" or "imagenet"); None: the family's
    options: Mapping[str, Any] = field(default_factory=dict)  # a configurable dataset's resolved options

    @property
    def pil_preset(self) -> str:
        return self.transforms or self.family


Reader = Callable[..., "MixDataset"]
# (folder, classes, train images per class, val images per class) -> the root to read
TinyWriter = Callable[[Path, int, int, int], Path]


class OptionError(ValueError):
    """A bad value for one key of a suite's dataset entry; `key` names it (`datasets[i].<key>`)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: what it is, how to read it, how check names what it counted, its fixture, its claims name.

    Subclass and override `resolve` for a dataset configured by the suite (see `mixbench.data.folder`), and
    `verify` for checks that need more than the listing (image headers).
    """

    info: DatasetInfo
    read: Reader
    write_tiny: TinyWriter | None = None
    claims_name: str | None = None  # the dataset's name in published claims (`CUB-200-2011`), if any
    test_is_val: bool = False  # the dataset's own name for its labelled held-out split is "test"
    needs_root: bool = True
    # (root, split) -> (what check calls the classes it counted, where it looked); None: ("classes", root)
    counted_in: Callable[[Path, str], tuple[str, Path]] | None = None

    @property
    def name(self) -> str:
        return self.info.name

    def resolve(self, options: Mapping[str, Any], root: Path | None) -> tuple[DatasetInfo, dict[str, Any]]:
        """The info for a suite entry's extra keys, and what the trial records of them (it enters the trial id).
        A fixed dataset takes none."""
        for key in options:
            raise OptionError(key, f"unknown key for dataset {self.name}; fix: remove it (only the configurable "
                                   f"datasets, e.g. imagefolder, take options)")
        return self.info, {}

    def verify(self, ds: MixDataset) -> list[str]:
        """Problems with the listed files that reading them would hit later (one line each); none by default."""
        return []

    def where(self, root: Path, split: str) -> tuple[str, Path]:
        return self.counted_in(root, split) if self.counted_in else ("classes", root)


def _import_readers() -> None:
    import mixbench.data as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


DATASETS: Registry[DatasetSpec] = Registry(
    "dataset", ENTRY_POINT_GROUP, accepts=lambda obj: isinstance(obj, DatasetSpec),
    expected="a mixbench.data.DatasetSpec", name_of=lambda spec: spec.name, discover=_import_readers)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register a built-in spec under its name (call it in the reader's module)."""
    return DATASETS.register(spec)


def dataset_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def list_datasets() -> list[str]:
    return DATASETS.names()


def dataset_info(name: str, options: Mapping[str, Any] | None = None, root: str | Path | None = None
                 ) -> DatasetInfo:
    """The info of a dataset; a configurable one needs the suite entry's `options` and its data `root`."""
    return _resolved(name, json.dumps(dict(options or {}), sort_keys=True, default=str),
                     None if root is None else str(Path(root).expanduser()))[0]


def resolve_dataset(name: str, options: Mapping[str, Any] | None = None, root: str | Path | None = None
                    ) -> tuple[DatasetInfo, dict[str, Any]]:
    """`DatasetSpec.resolve` of the named dataset, cached (a configurable dataset lists its classes there)."""
    return _resolved(name, json.dumps(dict(options or {}), sort_keys=True, default=str),
                     None if root is None else str(Path(root).expanduser()))


@lru_cache(maxsize=64)
def _resolved(name: str, options_json: str, root: str | None) -> tuple[DatasetInfo, dict[str, Any]]:
    spec = dataset_spec(name)
    if root is None and spec.info.default_root is not None:
        root = spec.info.default_root
    return spec.resolve(json.loads(options_json), None if root is None else Path(root))


def load_split(
    name: str,
    root: str | Path | None,
    split: str,
    *,
    options: Mapping[str, Any] | None = None,
    image_size: int | None = None,
    limit_per_class: int | None = None,
    seed: int = 0,
) -> MixDataset:
    """One split ("train" or "val") of a dataset, read from `root` (None: the dataset's default root).

    `options` are the suite entry's extra keys (configurable datasets only). `limit_per_class` keeps the first k
    images of each class in file order; `seed` only matters for `synthetic`. `image_size` sets the resolution the
    file datasets' PIL transforms produce (in-memory datasets keep their native size; `device_augment` resizes).
    """
    spec = dataset_spec(name)
    aliases = {"train": "train", "val": "val", **({"test": "val"} if spec.test_is_val else {})}
    if split not in aliases:
        raise ValueError(f"{name}: unknown split {split!r}; use one of {', '.join(aliases)}")
    if limit_per_class is not None and limit_per_class <= 0:
        raise ValueError(f"{name}: limit_per_class must be positive, got {limit_per_class}")
    if image_size is not None and image_size <= 0:
        raise ValueError(f"{name}: image_size must be positive, got {image_size}")
    if root is None and spec.info.default_root is not None:
        root = spec.info.default_root
    if root is None and spec.needs_root:
        raise FileNotFoundError(f"{name}: no data root given; pass --data-root {name}=PATH "
                                f"(or set MIXBENCH_DATA_{name.upper()})")
    info = dataset_info(name, options, root)
    return spec.read(info, None if root is None else Path(root).expanduser(), aliases[split],
                     image_size=image_size or info.image_size, limit_per_class=limit_per_class, seed=seed)
