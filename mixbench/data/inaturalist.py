"""iNaturalist 2017 and 2018 from their COCO-style annotation files (`train2017.json`/`val2017.json`,
`train2018.json`/`val2018.json`).

Each file has `images` ({id, file_name, ...}, file_name relative to the root and starting with the image folder:
`train_val_images/` in 2017, `train_val2018/` in 2018), `annotations` ({image_id, category_id}) and `categories`
({id, name, ...}, ids 0..5088 in 2017, 0..8141 in 2018). Train and val images share one tree, so the JSON, not
the folders, decides the split (torchvision's INaturalist ignores it). Class index = category_id; `classes` are
the category names by id. Images are in the order of the file's `images` list.
"""

from __future__ import annotations

import json
from pathlib import Path

from mixbench.data.dataset import FileDataset, missing
from mixbench.data.registry import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo, DatasetSpec, register_dataset

YEARS = {"inat2017": "2017", "inat2018": "2018"}
IMAGE_FOLDERS = {"2017": "train_val_images", "2018": "train_val2018"}
ARCHIVES = {"2017": "train_val_images.tar.gz and train_val2017.zip", "2018": "train_val2018.tar.gz and the "
            "{split}2018.json archive"}


def annotation_file(dataset: str, split: str) -> str:
    return f"{split}{YEARS[dataset]}.json"


def read_inat(info: DatasetInfo, root: Path, split: str, *, image_size: int, limit_per_class: int | None,
              seed: int = 0) -> FileDataset:
    year = YEARS[info.name]
    path = root / annotation_file(info.name, split)
    if not path.is_file():
        raise missing(info.name, path.name, root, f"extract {ARCHIVES[year].format(split=split)} there and pass "
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
                         f"fix: use the {year} release")
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


read_inat2018 = read_inat  # the name of the first release mixbench read


def write_inat(root: Path, year: str = "2018", num_classes: int = 3, n_train_per_class: int = 3,
               n_val_per_class: int = 2, size: tuple[int, int] = (20, 15)) -> Path:
    """A fixture in the real layout: `root/<image folder>/<supercategory>/<category>/<hash>.jpg` shared by train
    and val, and COCO-style `train<year>.json` / `val<year>.json` (categories 0..num_classes-1, listed in reverse
    so that file order and category order differ; label = category_id)."""
    from mixbench.data.fixtures import write_jpeg

    root = Path(root)
    supercategory = ["Plantae", "Aves", "Insecta"]
    categories = [{"id": c, "name": f"Species {c}", "supercategory": supercategory[c % 3]} for c in range(num_classes)]
    if year == "2018":
        for c in categories:
            c.update(kingdom="k", phylum="p", **{"class": "c"}, order="o", family="f", genus="g")
    image_id = 0
    for split, per_class in (("train", n_train_per_class), ("val", n_val_per_class)):
        images, annotations = [], []
        for category in [c for _ in range(per_class) for c in reversed(range(num_classes))]:
            folder = category if year == "2018" else f"Species_{category}"  # 2017 folders are species names
            file_name = f"{IMAGE_FOLDERS[year]}/{supercategory[category % 3]}/{folder}/{image_id:032x}.jpg"
            write_jpeg(root / file_name, category, size, seed=image_id)
            images.append({"id": image_id, "width": size[0], "height": size[1], "file_name": file_name,
                           "license": 1, "rights_holder": "fixture"})
            annotations.append({"id": 1000 + image_id, "image_id": image_id, "category_id": category})
            image_id += 1
        coco = {"info": {"year": int(year)}, "licenses": [], "images": images,
                "annotations": list(reversed(annotations)), "categories": categories}
        (root / f"{split}{year}.json").write_text(json.dumps(coco))
    return root


def _counted_in(root: Path, split: str, dataset: str) -> tuple[str, Path]:
    return "categories", root / annotation_file(dataset, split)


def _spec(name: str, num_classes: int, counts: dict[str, int], claims_name: str) -> DatasetSpec:
    year = YEARS[name]
    return register_dataset(DatasetSpec(
        DatasetInfo(name=name, family="imagenet", num_classes=num_classes, image_size=224, in_chans=3,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, in_memory=False, default_root=None, expected_counts=counts),
        read_inat, lambda folder, classes, train, val: write_inat(folder, year, classes, train, val), claims_name,
        counted_in=lambda root, split: _counted_in(root, split, name)))


# Sizes: Van Horn et al., "The iNaturalist Species Classification and Detection Dataset" (CVPR 2018), Table 1
# (2017: 5,089 classes, 579,184 train / 95,986 val); the 2018 competition README (8,142; 437,513 / 24,426).
INAT2017 = _spec("inat2017", 5089, {"train": 579_184, "val": 95_986}, "iNaturalist2017")
INAT2018 = _spec("inat2018", 8142, {"train": 437_513, "val": 24_426}, "iNaturalist2018")
