"""Places205 from its split lists (`trainvalsplit_places205/{train,val}_places205.csv`).

The lists are space-separated despite the `.csv`: `a/abbey/00000001.jpg 0` (label 0-204), paths relative
to `data/vision/torralba/deeplearning/images256/`. Class index = the label in the list; `classes` are
the category paths (`abbey`, `field/cultivated`) read off the list. Images are in list order.

`root` is the folder holding `trainvalsplit_places205/` (or the two lists themselves); the images are
looked for under `data/vision/torralba/deeplearning/images256/`, `images256/`, or the root itself.
"""

from __future__ import annotations

from pathlib import Path

from mixbench.data.dataset import FileDataset, missing
from mixbench.data.registry import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo, DatasetSpec, register_dataset

LIST_DIR = "trainvalsplit_places205"
IMAGE_DIRS = ("data/vision/torralba/deeplearning/images256", "images256", ".")


def read_places205(info: DatasetInfo, root: Path, split: str, *, image_size: int,
                   limit_per_class: int | None, seed: int = 0) -> FileDataset:
    list_name = f"{split}_places205.csv"
    list_path = next((p for p in (root / LIST_DIR / list_name, root / list_name) if p.is_file()), None)
    if list_path is None:
        raise missing(info.name, f"{LIST_DIR}/{list_name}", root,
                      f"pass --data-root {info.name}=PATH, the folder holding {LIST_DIR}/ and data/")
    relpaths: list[str] = []
    labels: list[int] = []
    for line_no, line in enumerate(list_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            relpath, label = line.rsplit(" ", 1)
            labels.append(int(label))
        except ValueError:
            raise ValueError(f"{info.name}: {list_path}:{line_no}: expected '<path> <label>', got {line!r}; "
                             f"fix: use the lists from trainvalsplit_places205.tar.gz") from None
        relpaths.append(relpath)
    if not relpaths:
        raise ValueError(f"{info.name}: {list_path} lists no images; fix: re-extract the split lists")
    image_dir = next((root / d for d in IMAGE_DIRS if (root / d / relpaths[0]).is_file()), None)
    if image_dir is None:
        raise missing(info.name, f"{relpaths[0]} (the first listed image)",
                      f"{root}/{{{','.join(IMAGE_DIRS)}}}",
                      f"extract imagesPlaces205_resize.tar.gz under {root}")
    names: dict[int, str] = {}
    for relpath, label in zip(relpaths, labels, strict=True):
        # `<letter>/<category>[/<subcategory>]/<file>`: the category is all but the first and last parts.
        names.setdefault(label, "/".join(relpath.split("/")[1:-1]))
    classes = [names.get(i, f"class_{i}") for i in range(max(names) + 1)]
    return FileDataset(info, root, split, classes, image_dir, relpaths, labels, image_size, limit_per_class)


def _tiny_fixture(folder: Path, classes: int, train: int, val: int) -> Path:
    from mixbench.data.fixtures import write_places205

    return write_places205(folder, ("a/abbey", "a/airport_terminal", "b/bedroom", "f/field/cultivated")[:classes],
                           train, val)


def _counted_in(root: Path, split: str) -> tuple[str, Path]:
    listed = root / LIST_DIR / f"{split}_places205.csv"
    return "classes", listed if listed.is_file() else root / f"{split}_places205.csv"


# Train count from Zhou et al. (NeurIPS 2014); val is 100 per class. Not checked against the lists.
PLACES205 = register_dataset(DatasetSpec(
    DatasetInfo(name="places205", family="imagenet", num_classes=205, image_size=224, in_chans=3,
                mean=IMAGENET_MEAN, std=IMAGENET_STD, in_memory=False, default_root=None,
                expected_counts={"train": 2_448_873, "val": 20_500}),
    read_places205, _tiny_fixture, "Places205", counted_in=_counted_in))
