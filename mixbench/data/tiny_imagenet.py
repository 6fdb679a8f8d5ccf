"""Tiny-ImageNet-200 in its raw layout (`tiny-imagenet-200/`).

train: `train/<wnid>/images/*.JPEG`; val: flat `val/images/val_<k>.JPEG` labelled by `val/val_annotations.txt`
(`file<TAB>wnid<TAB>box`). Class index = position in the *sorted* wnids of `wnids.txt` (the file itself is
not sorted; sorting matches ImageFolder over `train/`). `classes` are the wnids. Train images are in
class order, then file-name order; val images in annotation-file order. `root` may be the
`tiny-imagenet-200` folder or its parent.
"""

from __future__ import annotations

import os
from pathlib import Path

from mixbench.data.dataset import FileDataset, is_image_file, locate, missing
from mixbench.data.registry import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo, DatasetSpec, register_dataset

FOLDER = "tiny-imagenet-200"


def read_tiny_imagenet(info: DatasetInfo, root: Path, split: str, *, image_size: int,
                       limit_per_class: int | None, seed: int = 0) -> FileDataset:
    base = locate(root, FOLDER, "wnids.txt")
    if base is None:
        raise missing(info.name, f"{FOLDER}/wnids.txt", root,
                      f"unzip tiny-imagenet-200.zip there and pass --data-root {info.name}=PATH")
    wnids = sorted(line.strip() for line in (base / "wnids.txt").read_text().splitlines() if line.strip())
    index = {wnid: i for i, wnid in enumerate(wnids)}
    relpaths: list[str] = []
    labels: list[int] = []
    if split == "train":
        for wnid in wnids:
            images_dir = base / "train" / wnid / "images"
            if not images_dir.is_dir():
                raise missing(info.name, f"train/{wnid}/images", base, "incomplete extraction; unzip again")
            names = sorted(e.name for e in os.scandir(images_dir) if is_image_file(e.name))
            relpaths += [f"train/{wnid}/images/{name}" for name in names]
            labels += [index[wnid]] * len(names)
    else:
        annotations = base / "val" / "val_annotations.txt"
        if not annotations.is_file():
            raise missing(info.name, "val/val_annotations.txt", base, "incomplete extraction; unzip again")
        for line_no, line in enumerate(annotations.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in index:
                raise ValueError(f"{info.name}: {annotations}:{line_no}: expected 'file<TAB>wnid...' with a "
                                 f"wnid from wnids.txt, got {line!r}; fix: unzip the dataset again")
            relpaths.append(f"val/images/{fields[0]}")
            labels.append(index[fields[1]])
    return FileDataset(info, base, split, wnids, base, relpaths, labels, image_size, limit_per_class)


def _tiny_fixture(folder: Path, classes: int, train: int, val: int) -> Path:
    from mixbench.data.fixtures import write_tiny_imagenet

    return write_tiny_imagenet(folder, [f"n0{1629819 - 186282 * k:07d}" for k in range(classes)], train, val)


def _counted_in(root: Path, split: str) -> tuple[str, Path]:
    base = locate(root, FOLDER, "wnids.txt") or root
    return ("class folders", base / "train") if split == "train" else ("classes", base / "val")


TINY_IMAGENET = register_dataset(DatasetSpec(
    DatasetInfo(name="tiny_imagenet", family="tiny", num_classes=200, image_size=64, in_chans=3,
                mean=IMAGENET_MEAN, std=IMAGENET_STD, in_memory=False, default_root=None,
                expected_counts={"train": 100_000, "val": 10_000}),
    read_tiny_imagenet, _tiny_fixture, "Tiny-ImageNet", counted_in=_counted_in))
