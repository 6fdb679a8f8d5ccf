"""FGVC-Aircraft 2013b (`fgvc-aircraft-2013b/`) with its official trainval/test split.

`data/images/<id>.jpg` (10,000 photos), class lists `data/variants.txt` (100), `data/families.txt` (70) and
`data/manufacturers.txt` (30), one name per line, and split lists `data/images_<level>_<split>.txt` with lines
`<id> <name>` (names may hold spaces: `Cessna 525`, `Boeing 707`), for level variant/family/manufacturer and split
train/val/trainval/test. mixbench trains on `trainval` (6,667) and evaluates on `test` (3,333), as the fine-grained
benchmarks (openmixup's `Aircrafts/train_labeled.txt` / `test_labeled.txt`) do. Class index = position in the
level's list file (torchvision's FGVCAircraft convention); images are in list-file order. The default level is
`variant` (100 classes, the benchmark's); `level: family` or `level: manufacturer` in the suite entry picks the
others. `root` may be the `fgvc-aircraft-2013b` folder or its parent. The photos keep their 20-px copyright
banner, as in the benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mixbench.data.dataset import FileDataset, locate, missing
from mixbench.data.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetInfo,
    DatasetSpec,
    OptionError,
    register_dataset,
)

FOLDER = "fgvc-aircraft-2013b"
LEVELS = {"variant": ("variants.txt", 100), "family": ("families.txt", 70), "manufacturer": ("manufacturers.txt", 30)}
SPLIT_FILES = {"train": "trainval", "val": "test"}


def _base(info: DatasetInfo, root: Path) -> Path:
    base = locate(root, FOLDER, "data/images")
    if base is None:
        raise missing(info.name, f"{FOLDER}/data/images", root,
                      f"extract fgvc-aircraft-2013b.tar.gz there and pass --data-root {info.name}=PATH")
    return base / "data"


def read_aircraft(info: DatasetInfo, root: Path, split: str, *, image_size: int, limit_per_class: int | None,
                  seed: int = 0) -> FileDataset:
    data = _base(info, root)
    level = info.options.get("level", "variant")
    names_file, list_file = data / LEVELS[level][0], data / f"images_{level}_{SPLIT_FILES[split]}.txt"
    for path in (names_file, list_file):
        if not path.is_file():
            raise missing(info.name, path.name, data, "the extraction is incomplete; re-extract "
                                                      "fgvc-aircraft-2013b.tar.gz")
    classes = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    index = {name: i for i, name in enumerate(classes)}
    relpaths, labels = [], []
    for line_no, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        image_id, sep, name = line.strip().partition(" ")
        if not sep or name not in index:
            raise ValueError(f"{info.name}: {list_file}:{line_no}: expected '<image id> <{level} of "
                             f"{names_file.name}>', got {line!r}; fix: re-extract fgvc-aircraft-2013b.tar.gz")
        relpaths.append(f"{image_id}.jpg")
        labels.append(index[name])
    return FileDataset(info, root, split, classes, data / "images", relpaths, labels, image_size, limit_per_class)


def write_aircraft(root: Path, num_classes: int = 3, n_trainval_per_class: int = 2, n_test_per_class: int = 1,
                   size: tuple[int, int] = (24, 18)) -> Path:
    """`root/fgvc-aircraft-2013b/data/` in the real layout: images/<7-digit id>.jpg, variants.txt (names with
    spaces and dashes, not sorted), families.txt, manufacturers.txt and images_<level>_{train,val,trainval,test}.txt
    (classes interleaved, as in the real lists). Label = position in variants.txt."""
    from mixbench.data.fixtures import write_jpeg

    data = Path(root) / FOLDER / "data"
    data.mkdir(parents=True, exist_ok=True)
    variants = ["Boeing 707-320", "A300B4", "Cessna 525", "DC-3", "F-16A/B"][:num_classes]
    families = [f"Family {v.split()[0]}" for v in variants]
    makers = [f"Maker {k % 2}" for k in range(num_classes)]
    for name, values in (("variants.txt", variants), ("families.txt", families),
                         ("manufacturers.txt", sorted(set(makers)))):
        (data / name).write_text("".join(f"{v}\n" for v in dict.fromkeys(values)))
    image_id = 1_000_000
    rows: dict[str, list[tuple[str, int]]] = {"trainval": [], "test": []}
    for split, per_class in (("trainval", n_trainval_per_class), ("test", n_test_per_class)):
        for label in [c for _ in range(per_class) for c in range(num_classes)]:
            write_jpeg(data / "images" / f"{image_id:07d}.jpg", label, size, seed=image_id)
            rows[split].append((f"{image_id:07d}", label))
            image_id += 1
    half = len(rows["trainval"]) // 2  # the official train and val halves of trainval
    rows["train"], rows["val"] = rows["trainval"][:half], rows["trainval"][half:]
    for level, names in (("variant", variants), ("family", families), ("manufacturer", makers)):
        for split, items in rows.items():
            (data / f"images_{level}_{split}.txt").write_text("".join(f"{i} {names[c]}\n" for i, c in items))
    return Path(root)


@dataclass(frozen=True)
class AircraftSpec(DatasetSpec):
    def resolve(self, options: Mapping[str, Any], root: Path | None) -> tuple[DatasetInfo, dict[str, Any]]:
        for key in options:
            if key != "level":
                raise OptionError(key, f"unknown key for dataset {self.name}; fix: remove it ({self.name} takes "
                                       f"level: variant, family or manufacturer)")
        level = options.get("level", "variant")
        if level not in LEVELS:
            raise OptionError("level", f"{self.name}: level must be one of {', '.join(LEVELS)}, got {level!r}")
        if level == "variant":  # the benchmark's classes: the trial id stays free of the option
            return self.info, {}
        return replace(self.info, num_classes=LEVELS[level][1], options={"level": level}), {}


def _tiny_fixture(folder: Path, classes: int, train: int, val: int) -> Path:
    return write_aircraft(folder, classes, train, val)


def _counted_in(root: Path, split: str) -> tuple[str, Path]:
    base = locate(root, FOLDER, "data/images") or root
    return "variants", base / "data" / f"images_variant_{SPLIT_FILES[split]}.txt"


AIRCRAFT = register_dataset(AircraftSpec(
    DatasetInfo(name="aircraft", family="imagenet", num_classes=100, image_size=224, in_chans=3, mean=IMAGENET_MEAN,
                std=IMAGENET_STD, in_memory=False, default_root=None,
                expected_counts={"train": 6_667, "val": 3_333}),
    read_aircraft, _tiny_fixture, "FGVC-Aircraft", test_is_val=True, counted_in=_counted_in))
