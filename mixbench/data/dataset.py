"""What a loaded split is: `MixDataset`, with its two kinds (in memory, or image files decoded per item).

Both return `(uint8 tensor C,H,W, int label)` and carry `info`, `classes` (names in label order),
`targets` (int64 tensor), `root` and `split` ("train" or "val").
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mixbench.data.transforms import eval_transform, train_transform

if TYPE_CHECKING:
    from mixbench.data.registry import DatasetInfo


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def missing(dataset: str, what: str, where: Path | str, fix: str) -> FileNotFoundError:
    """The one-line error every reader raises for absent data: which dataset, what, where, and the fix."""
    return FileNotFoundError(f"{dataset}: no {what} under {where}; {fix}")


def locate(root: Path, folder: str, marker: str) -> Path | None:
    """`root` or `root/folder`, whichever holds `marker` (users give an archive's folder or its parent)."""
    for candidate in (root, root / folder):
        if (candidate / marker).exists():
            return candidate
    return None


def first_per_class(labels: torch.Tensor, k: int | None) -> torch.Tensor:
    """Indices (ascending) of the first `k` items of each class in file order; all items when k is None."""
    n = labels.numel()
    if k is None:
        return torch.arange(n)
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    counts = torch.bincount(sorted_labels)
    group_start = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(n) - group_start[sorted_labels]
    return order[rank_in_class < k].sort().values


def check_labels(dataset: str, labels: torch.Tensor, num_classes: int, source: Path | str) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{dataset}: labels in {source} span {int(labels.min())}..{int(labels.max())}, "
                         f"outside 0..{num_classes - 1}; fix: point the root at the real {dataset} files")


class MixDataset(Dataset):
    info: DatasetInfo
    classes: list[str]
    targets: torch.Tensor
    root: Path | None
    split: str
    image_size: int  # the resolution training runs at (file datasets produce it; in-memory ones get resized)

    def __init__(self, info: DatasetInfo, root: Path | None, split: str, classes: list[str], image_size: int):
        if not classes:
            raise ValueError(f"{info.name}: no classes found under {root}")
        if len(classes) > info.num_classes:
            raise ValueError(f"{info.name}: {root} holds {len(classes)} classes, more than the "
                             f"{info.num_classes} of {info.name}; fix: point the root at the real files")
        self.info, self.root, self.split, self.classes = info, root, split, classes
        self.image_size = image_size
        # `batches` keeps one DataLoader per configuration here so persistent workers survive epochs.
        self._loaders: dict[tuple, Any] = {}

    def __len__(self) -> int:
        return self.targets.numel()

    def close(self) -> None:
        """Stop the persistent loader workers `batches` started for this dataset (they also stop with it)."""
        self._loaders.clear()

    def __getstate__(self) -> dict:
        # Workers started by spawn receive a pickled dataset; the loaders (and their workers) stay home.
        return {**self.__dict__, "_loaders": {}}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.info.name}, split={self.split}, n={len(self)}, "
                f"classes={len(self.classes)}, root={self.root})")


class InMemoryDataset(MixDataset):
    """A split held as `images` (uint8 N,C,H,W) and `labels` (int64 N); batches are slices of them."""

    def __init__(self, info: DatasetInfo, root: Path | None, split: str, classes: list[str],
                 images: torch.Tensor, labels: torch.Tensor, image_size: int,
                 limit_per_class: int | None = None):
        super().__init__(info, root, split, classes, image_size)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] != labels.numel():
            raise ValueError(f"{info.name}: images must be uint8 N,C,H,W with one label each; got "
                             f"{tuple(images.shape)} {images.dtype} and {labels.numel()} labels in {root}")
        check_labels(info.name, labels, info.num_classes, root or info.name)
        keep = first_per_class(labels, limit_per_class)
        if limit_per_class is not None:
            images, labels = images[keep], labels[keep]
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64)
        self.targets = self.labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


class FileDataset(MixDataset):
    """A split of image files under `image_dir`, decoded with PIL and transformed per item.

    `ds[i]` gives the deterministic eval view of item i; `ds[(i, item_seed)]` the train view, whose random
    crop and flip come from `item_seed` alone, so an epoch's images do not depend on the number of workers.
    Paths are kept as one numpy byte-string array rather than a list of str: forked workers then share it
    without touching per-object reference counts (which would copy the pages of a 1.3M-item list).
    """

    def __init__(self, info: DatasetInfo, root: Path, split: str, classes: list[str], image_dir: Path,
                 relpaths: list[str], labels: list[int] | torch.Tensor, image_size: int,
                 limit_per_class: int | None = None):
        super().__init__(info, root, split, classes, image_size)
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if not relpaths:
            raise missing(info.name, f"{split} images", image_dir,
                          f"point --data-root {info.name}=PATH at the complete {info.name} folder")
        check_labels(info.name, labels, info.num_classes, root)
        keep = first_per_class(labels, limit_per_class)
        self.image_dir = image_dir
        self.relpaths = np.array([relpaths[i].encode() for i in keep.tolist()], dtype=np.bytes_)  # UTF-8
        self.labels = labels[keep]
        self.targets = self.labels
        self.train_transform = train_transform(info.pil_preset, image_size)
        self.eval_transform = eval_transform(info.pil_preset, image_size)
        self.mode = "L" if info.in_chans == 1 else "RGB"

    def path(self, index: int) -> str:
        return os.path.join(self.image_dir, self.relpaths[index].decode())

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, item_seed = key if isinstance(key, tuple) else (key, None)
        path = self.path(index)
        try:
            with Image.open(path) as img:
                # Tiny-ImageNet has grey images, ImageNet a few CMYK ones, users' PNGs alpha and palettes: every
                # file dataset is RGB, or grey when its info says 1 channel.
                img = img.convert(self.mode) if img.mode != self.mode else img
                if item_seed is None:
                    image = self.eval_transform(img)
                else:
                    image = self.train_transform(img, random.Random(item_seed))
        except OSError as err:
            raise OSError(f"{self.info.name}: cannot read {path} ({err}); fix: re-extract the file") from err
        return image, int(self.labels[index])
