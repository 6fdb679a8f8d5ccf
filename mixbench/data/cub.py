"""CUB-200-2011 (`CUB_200_2011/`) with its official classification split.

`images.txt` (`<image_id> <relpath under images/>`), `image_class_labels.txt` (`<image_id> <class_id>`,
1-based), `train_test_split.txt` (`<image_id> <1 train | 0 test>`), `classes.txt` (`<class_id> <name>`).
Class index = class_id - 1; `classes` are the names of classes.txt (`001.Black_footed_Albatross` ...).
Images are in images.txt order. `root` may be the `CUB_200_2011` folder or its parent.
"""

from __future__ import annotations

from pathlib import Path

from mixbench.data.dataset import FileDataset, locate, missing
from mixbench.data.registry import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo, DatasetSpec, register_dataset

FOLDER = "CUB_200_2011"
INDEX_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")


def read_pairs(path: Path, dataset: str) -> list[tuple[str, str]]:
    """`<id> <value>` lines (the value may hold spaces)."""
    pairs = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            key, sep, value = line.strip().partition(" ")
            if not sep:
                raise ValueError(f"{dataset}: {path}:{line_no}: expected '<id> <value>', got {line!r}; "
                                 f"fix: re-extract CUB_200_2011.tgz")
            pairs.append((key, value.strip()))
    return pairs


def read_cub(info: DatasetInfo, root: Path, split: str, *, image_size: int, limit_per_class: int | None,
             seed: int = 0) -> FileDataset:
    base = locate(root, FOLDER, "images.txt")
    if base is None:
        raise missing(info.name, f"{FOLDER}/images.txt", root,
                      f"extract CUB_200_2011.tgz there and pass --data-root {info.name}=PATH")
    for name in INDEX_FILES:
        if not (base / name).is_file():
            raise missing(info.name, name, base, "the extraction is incomplete; re-extract CUB_200_2011.tgz")
    images = read_pairs(base / "images.txt", info.name)
    class_of = dict(read_pairs(base / "image_class_labels.txt", info.name))
    is_train = dict(read_pairs(base / "train_test_split.txt", info.name))
    class_names = read_pairs(base / "classes.txt", info.name)
    classes = [name for _, name in sorted(class_names, key=lambda pair: int(pair[0]))]
    wanted = "1" if split == "train" else "0"
    relpaths, labels = [], []
    for image_id, relpath in images:
        if image_id not in class_of or image_id not in is_train:
            raise ValueError(f"{info.name}: image {image_id} of {base / 'images.txt'} has no label or "
                             f"split entry; fix: re-extract CUB_200_2011.tgz")
        if is_train[image_id] == wanted:
            relpaths.append(relpath)
            labels.append(int(class_of[image_id]) - 1)
    return FileDataset(info, base, split, classes, base / "images", relpaths, labels, image_size,
                       limit_per_class)


def _tiny_fixture(folder: Path, classes: int, train: int, val: int) -> Path:
    from mixbench.data.fixtures import write_cub

    return write_cub(folder, classes, train, val)


CUB200 = register_dataset(DatasetSpec(
    DatasetInfo(name="cub200", family="imagenet", num_classes=200, image_size=224, in_chans=3,
                mean=IMAGENET_MEAN, std=IMAGENET_STD, in_memory=False, default_root=None,
                expected_counts={"train": 5_994, "val": 5_794}),
    read_cub, _tiny_fixture, "CUB-200-2011", test_is_val=True))
