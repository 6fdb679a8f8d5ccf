"""Fashion-MNIST and MNIST from IDX files (`train-images-idx3-ubyte.gz` ..., gzipped or not).

IDX: big-endian uint32 magic (2051 for images, 2049 for labels), then uint32 count (and rows, cols for
images), then uint8 payload. The val split is the files' `t10k` set. Class index = the label stored in
the file (Fashion-MNIST: 0 T-shirt/top ... 9 Ankle boot; MNIST: the digit). Images stay 1-channel.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from mixbench.data.dataset import InMemoryDataset, missing
from mixbench.data.registry import DatasetInfo, DatasetSpec, register_dataset

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
CLASSES = {
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"],
    "mnist": [str(d) for d in range(10)],
}
_PREFIX = {"train": "train", "val": "t10k"}
_FIX = {
    "fashion_mnist": "install Debian's dataset-fashion-mnist or pass --data-root fashion_mnist=PATH",
    "mnist": "pass --data-root mnist=PATH (the folder holding the four IDX files)",
}


def find_idx_file(dataset: str, root: Path, stem: str) -> Path:
    """`stem.gz` or `stem` under root."""
    for path in (root / f"{stem}.gz", root / stem):
        if path.is_file():
            return path
    raise missing(dataset, f"{stem}.gz", root, _FIX[dataset])


def read_idx_file(path: Path, magic: int, dataset: str) -> np.ndarray:
    """The array stored in one IDX file, checking its magic number and that the payload size matches."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
        raw = f.read()
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise ValueError(f"{dataset}: {path} is too short for an IDX header; fix: re-download the file")
    found, *dims = struct.unpack(f">{1 + ndim}I", raw[:header])
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise ValueError(f"{dataset}: {path} has IDX magic {found}, expected {magic} ({kind}); "
                         f"fix: check it is the right file")
    payload = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if payload.size != int(np.prod(dims)):
        raise ValueError(f"{dataset}: {path} declares {'x'.join(map(str, dims))} values but holds "
                         f"{payload.size}; fix: the file is truncated, re-download it")
    return payload.reshape(dims)


def read_idx(info: DatasetInfo, root: Path, split: str, *, image_size: int, limit_per_class: int | None,
             seed: int = 0) -> InMemoryDataset:
    images_path = find_idx_file(info.name, root, f"{_PREFIX[split]}-images-idx3-ubyte")
    labels_path = find_idx_file(info.name, root, f"{_PREFIX[split]}-labels-idx1-ubyte")
    images = read_idx_file(images_path, IMAGES_MAGIC, info.name)
    labels = read_idx_file(labels_path, LABELS_MAGIC, info.name)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{info.name}: {images_path} holds {images.shape[0]} images but {labels_path} "
                         f"{labels.shape[0]} labels; fix: use files from the same release")
    images = torch.from_numpy(images.copy()).unsqueeze(1)  # copy: frombuffer arrays are read-only
    return InMemoryDataset(info, root, split, list(CLASSES[info.name]), images,
                           torch.from_numpy(labels.astype(np.int64)), image_size, limit_per_class)


def _tiny_idx(folder: Path, classes: int, train: int, val: int) -> Path:
    from mixbench.data.fixtures import write_idx

    return write_idx(folder, train, val, num_classes=classes)


def _idx_info(name: str, mean: float, std: float, default_root: str | None) -> DatasetInfo:
    return DatasetInfo(name=name, family="cifar", num_classes=10, image_size=28, in_chans=1, mean=(mean,),
                       std=(std,), in_memory=True, default_root=default_root,
                       expected_counts={"train": 60_000, "val": 10_000})


FASHION_MNIST = register_dataset(DatasetSpec(
    _idx_info("fashion_mnist", 0.2860, 0.3530, "/usr/share/datasets/fashion-mnist"), read_idx, _tiny_idx,
    test_is_val=True))
MNIST = register_dataset(DatasetSpec(_idx_info("mnist", 0.1307, 0.3081, None), read_idx, _tiny_idx,
                                     test_is_val=True))
