"""ImageNet-1k as an ImageFolder: `root/train/<wnid>/*` and `root/val/<wnid>/*` (any depth below the class).

Split folders may also be named `training` or `valid`/`validation`/`eval`/`evaluation` (as timm searches).
Class index = position in the sorted class-folder names of the train split (`n01440764` -> 0), which
matches torchvision/timm pretrained heads; val folders are mapped onto that list (the val folder names
are used only when there is no train folder). Within a class, files are in sorted path order.

A raw, flat val folder (`val/ILSVRC2012_val_00000001.JPEG` ...) works too when Kaggle's
`LOC_val_solution.csv` (`ImageId,PredictionString` with the wnid first) sits in the val folder, the root,
or up to three folders above the root; flat images are in file-name order.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from mixbench.data.dataset import FileDataset, is_image_file, missing
from mixbench.data.registry import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo, DatasetSpec, register_dataset

SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("val", "valid", "validation", "eval", "evaluation")}
VAL_SOLUTION = "LOC_val_solution.csv"


def find_split_dir(root: Path, split: str) -> Path | None:
    return next((root / name for name in SPLIT_FOLDERS[split] if (root / name).is_dir()), None)


def class_folders(split_dir: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir(follow_symlinks=True))


def images_under(folder: Path, root: Path) -> list[str]:
    """Image paths below `folder`, relative to `root`, in sorted order (sub-folders included)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        found += [os.path.join(rel, name) for name in sorted(filenames) if is_image_file(name)]
    return found


def read_val_solution(dataset: str, val_dir: Path, root: Path) -> dict[str, str]:
    """Image stem -> wnid from Kaggle's LOC_val_solution.csv, for a flat val folder."""
    places = [val_dir, root, *list(root.parents)[:3]]
    path = next((p / VAL_SOLUTION for p in places if (p / VAL_SOLUTION).is_file()), None)
    if path is None:
        raise missing(dataset, f"class folders or {VAL_SOLUTION}", val_dir,
                      f"re-folder val by class (valprep.sh) or put Kaggle's {VAL_SOLUTION} beside it")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:2] != ["ImageId", "PredictionString"]:
        raise ValueError(f"{dataset}: {path} does not start with 'ImageId,PredictionString'; "
                         f"fix: use Kaggle's file")
    return {row[0]: row[1].split()[0] for row in rows[1:] if len(row) >= 2 and row[1].strip()}


def read_imagefolder(info: DatasetInfo, root: Path, split: str, *, image_size: int,
                     limit_per_class: int | None, seed: int = 0) -> FileDataset:
    split_dir = find_split_dir(root, split)
    if split_dir is None:
        raise missing(info.name, f"{split} folder ({' or '.join(SPLIT_FOLDERS[split])})", root,
                      f"pass --data-root {info.name}=PATH, the folder holding train/ and val/")
    train_dir = find_split_dir(root, "train")
    split_classes = class_folders(split_dir)
    if not split_classes and split == "train":
        raise missing(info.name, "class folders", split_dir, "lay train images out as train/<wnid>/*.JPEG")
    solution = None if split_classes else read_val_solution(info.name, split_dir, root)
    # Without a train folder (a val-only copy): val's folders, or the classes its solution file names.
    classes = class_folders(train_dir) if train_dir else split_classes or sorted(set(solution.values()))
    index = {name: i for i, name in enumerate(classes)}
    relpaths: list[str] = []
    labels: list[int] = []
    if solution is None:
        for name in split_classes:
            if name not in index:
                raise ValueError(f"{info.name}: {split_dir / name} is not a class of {train_dir}; fix: "
                                 f"remove it or make {split} hold the same class folders as train")
            found = images_under(split_dir / name, root)
            relpaths += found
            labels += [index[name]] * len(found)
    else:
        for name in sorted(e.name for e in os.scandir(split_dir) if is_image_file(e.name)):
            wnid = solution.get(Path(name).stem)
            if wnid not in index:
                raise ValueError(f"{info.name}: {split_dir / name} has no known class in {VAL_SOLUTION} "
                                 f"(got {wnid!r}); fix: use the solution file that goes with these images")
            relpaths.append(os.path.join(os.path.relpath(split_dir, root), name))
            labels.append(index[wnid])
    return FileDataset(info, root, split, classes, root, relpaths, labels, image_size, limit_per_class)


def _tiny_fixture(folder: Path, classes: int, train: int, val: int) -> Path:
    from mixbench.data.fixtures import write_imagefolder

    return write_imagefolder(folder, [f"n0{1440764 + 2773 * k:07d}" for k in range(classes)], train, val)


def _counted_in(root: Path, split: str) -> tuple[str, Path]:
    split_dir = find_split_dir(root, split) or root / split
    return ("class folders" if split_dir.is_dir() and class_folders(split_dir) else "classes"), split_dir


IMAGENET = register_dataset(DatasetSpec(
    DatasetInfo(name="imagenet", family="imagenet", num_classes=1000, image_size=224, in_chans=3,
                mean=IMAGENET_MEAN, std=IMAGENET_STD, in_memory=False, default_root=None,
                expected_counts={"train": 1_281_167, "val": 50_000}),
    read_imagefolder, _tiny_fixture, "ImageNet-1k", counted_in=_counted_in))
