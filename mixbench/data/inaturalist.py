"""iNaturalist 2018 from its COCO-style annotation files (`train2018.json`, `val2018.json`).

Each file has `images` ({id, file_name, ...}, file_name relative to the root and starting with
`train_val2018/`), `annotations` ({image_id, category_id}) and `categories` ({id, name, ...}, ids 0..8141).
Train and val images share one tree, so the JSON, not the folders, decides the split (torchvision's
INaturalist ignores it). Class index = category_id; `classes` are the category names by id. Images are in
the order of the file's `images` list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from mixbench.data.dataset import FileDataset, missing

if TYPE_CHECKING:
    from mixbench.data.registry import DatasetInfo

ANNOTATION_FILES = {"train": "train2018.json", "val": "val2018.json"}


def read_inat2018(info: DatasetInfo, root: Path, split: str, *, image_size: int, limit_per_class: int | None,
                  seed: int = 0) -> FileDataset:
    path = root / ANNOTATION_FILES[split]
    if not path.is_file():
        raise missing(info.name, ANNOTATION_FILES[split], root,
                      f"extract train_val2018.tar.gz and the {split}2018.json archive there and pass "
                      f"--data-root {info.name}=PATH")
    with open(path) as f:
        try:
            coco = json.load(f)
            images, annotations, categories = coco["images"], coco["annotations"], coco["categories"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{info.name}: {path} is not a COCO-style annotation file ({err!r}); "
                             f"fix: re-extract it") from err
    ids = sorted(c["id"] for c in categories)
    if ids != list(range(len(ids))):
        raise ValueError(f"{info.name}: {path} category ids are not 0..{len(ids) - 1}; "
                         f"fix: use the 2018 release")
    names = {c["id"]: c["name"] for c in categories}
    category_of = {a["image_id"]: a["category_id"] for a in annotations}
    relpaths, labels = [], []
    for image in images:
        if image["id"] not in category_of:
            raise ValueError(f"{info.name}: {path}: image {image['id']} ({image['file_name']}) has no "
                             f"annotation; fix: re-extract the annotation file")
        relpaths.append(image["file_name"])
        labels.append(category_of[image["id"]])
    return FileDataset(info, root, split, [names[i] for i in ids], root, relpaths, labels, image_size,
                       limit_per_class)
