"""Miniature datasets in each dataset's real on-disk layout: the fixtures of the tests and of `--tiny`.

The writers (moved here from tests/fixtures_data.py, which re-exports them) take the folder to write into and
return the path to pass to `load_split` as root. The images of the file datasets are small noisy JPEGs whose
mean colour is `class_colour(label)`, where `label` is the class index mixbench's reader must assign (sorted
wnids, category id, class id - 1, ...), so a test can check that each image came with the right label.

`--tiny` (`mixbench run|check SUITE --tiny`, see `prepare_tiny` and docs/cost_model.md "--tiny") writes one
fixture per dataset of the suite, once, into `<results>/.tiny/data/<dataset>/`, and a scaled-down copy of the
suite that trains on them into `<results>/.tiny/suites/<suite>.yaml`; its trials go to `<results>/<suite>-tiny/`.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import pickle
import shutil
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from mixbench.check import Expected

IDX_MAGIC = {3: 2051, 1: 2049}  # images (N, rows, cols), labels (N,)


def class_colour(label: int) -> tuple[int, int, int]:
    """A colour per class, far enough from the others' to survive JPEG and resizing."""
    return (40 + 70 * label) % 256, (200 - 60 * label) % 256, (90 + 110 * label) % 256


def write_jpeg(path: Path, label: int, size: tuple[int, int] = (16, 16), *, grey: bool = False,
               seed: int = 0) -> None:
    """A `size` (width, height) image of `class_colour(label)` plus noise (so crops differ); format from
    the suffix."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = np.clip(np.array(class_colour(label)) + rng.integers(-24, 25, (height, width, 3)), 0, 255)
    image = Image.fromarray(pixels.astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    (image.convert("L") if grey else image).save(path, quality=95)


def _labels(num_classes: int, per_class: int) -> list[int]:
    # Interleaved (0, 1, 2, 0, 1, 2, ...) as the real files are not sorted by class.
    return [k % num_classes for k in range(num_classes * per_class)]


# --- CIFAR ------------------------------------------------------------------------------------------


def write_cifar_batch(path: Path, images: np.ndarray, labels: Sequence[int], *, label_key: str = "labels",
                      extra: dict | None = None) -> None:
    """One batch file: `images` uint8 N,3,32,32 stored as N×3072 (R plane, G plane, B plane)."""
    images = np.asarray(images, dtype=np.uint8)
    batch = {"batch_label": f"fixture batch {path.name}", label_key: list(map(int, labels)),
             "data": images.reshape(len(images), 3 * 32 * 32),
             "filenames": [f"image_{i}.png" for i in range(len(images))], **(extra or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)  # the protocol of the Python-2 originals


def _random_images(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def write_cifar10(root: Path, n_per_class: int = 2, n_test_per_class: int = 1, num_classes: int = 3,
                  seed: int = 0) -> Path:
    """`root/cifar-10-batches-py/`: data_batch_1..5 (train images spread over them), test_batch,
    batches.meta (all 10 names; images only for the first `num_classes` classes)."""
    rng = np.random.default_rng(seed)
    out = Path(root) / "cifar-10-batches-py"
    train_labels = _labels(num_classes, n_per_class)
    train_images = _random_images(len(train_labels), rng)
    for i, part in enumerate(np.array_split(np.arange(len(train_labels)), 5), 1):
        write_cifar_batch(out / f"data_batch_{i}", train_images[part], [train_labels[j] for j in part])
    test_labels = _labels(num_classes, n_test_per_class)
    write_cifar_batch(out / "test_batch", _random_images(len(test_labels), rng), test_labels)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                            "truck"], "num_cases_per_batch": 10000, "num_vis": 3072}
    with open(out / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    (out / "readme.html").write_text("<html>fixture</html>\n")
    return out


def write_cifar100(root: Path, n_per_class: int = 2, n_test_per_class: int = 1, num_classes: int = 3,
                   seed: int = 0) -> Path:
    """`root/cifar-100-python/`: train, test, meta (fine labels 0..num_classes-1, coarse = fine // 5)."""
    rng = np.random.default_rng(seed)
    out = Path(root) / "cifar-100-python"
    for name, per_class in (("train", n_per_class), ("test", n_test_per_class)):
        labels = _labels(num_classes, per_class)
        write_cifar_batch(out / name, _random_images(len(labels), rng), labels, label_key="fine_labels",
                          extra={"coarse_labels": [k // 5 for k in labels]})
    meta = {"fine_label_names": [f"fine_{k:02d}" for k in range(100)],
            "coarse_label_names": [f"coarse_{k:02d}" for k in range(20)]}
    with open(out / "meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return out


# --- IDX (Fashion-MNIST, MNIST) ------------------------------------------------------------------------


def write_idx_file(path: Path, array: np.ndarray, *, gz: bool = True, magic: int | None = None) -> None:
    """An IDX file: big-endian uint32 magic and dimensions, then the uint8 values."""
    array = np.asarray(array, dtype=np.uint8)
    magic = IDX_MAGIC[array.ndim] if magic is None else magic
    raw = struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(raw)


def write_idx(root: Path, n_per_class: int = 3, n_test_per_class: int = 2, num_classes: int = 10,
              size: int = 28, gz: bool = True, seed: int = 0) -> Path:
    """`root/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`, as dataset-fashion-mnist installs them."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    suffix = ".gz" if gz else ""
    for prefix, per_class in (("train", n_per_class), ("t10k", n_test_per_class)):
        labels = np.array(_labels(num_classes, per_class), dtype=np.uint8)
        write_idx_file(root / f"{prefix}-images-idx3-ubyte{suffix}",
                       rng.integers(0, 256, (len(labels), size, size), dtype=np.uint8), gz=gz)
        write_idx_file(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz=gz)
    return root


# --- Tiny-ImageNet-200 ---------------------------------------------------------------------------------


def write_tiny_imagenet(root: Path, wnids: Sequence[str] = ("n03000000", "n01000000", "n02000000"),
                        n_train_per_class: int = 3, n_val_per_class: int = 2, size: int = 16) -> Path:
    """`root/tiny-imagenet-200/` with wnids.txt in the given (unsorted) order, train/<wnid>/images/*.JPEG,
    flat val/images with val_annotations.txt, test/images and words.txt. The first train image of the
    first sorted wnid and val_0.JPEG are greyscale."""
    out = Path(root) / "tiny-imagenet-200"
    out.mkdir(parents=True, exist_ok=True)
    label = {w: i for i, w in enumerate(sorted(wnids))}
    (out / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (out / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    for wnid in wnids:
        boxes = []
        for k in range(n_train_per_class):
            name = f"{wnid}_{k}.JPEG"
            write_jpeg(out / "train" / wnid / "images" / name, label[wnid], (size, size),
                       grey=(label[wnid] == 0 and k == 0), seed=k)
            boxes.append(f"{name}\t0\t0\t{size - 1}\t{size - 1}\n")
        (out / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    annotations = []
    for k, wnid in enumerate(w for _ in range(n_val_per_class) for w in wnids):
        write_jpeg(out / "val" / "images" / f"val_{k}.JPEG", label[wnid], (size, size), grey=(k == 0),
                   seed=100 + k)
        annotations.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t{size - 1}\t{size - 1}\n")
    (out / "val" / "val_annotations.txt").write_text("".join(annotations))
    write_jpeg(out / "test" / "images" / "test_0.JPEG", 0, (size, size))
    return out


# --- ImageNet as an ImageFolder ----------------------------------------------------------------------------


def write_imagefolder(root: Path, classes: Sequence[str] = ("n02000000", "n01000000", "n03000000"),
                      n_train_per_class: int = 3, n_val_per_class: int = 2, size: tuple[int, int] = (20, 15),
                      train_dir: str = "train", val_dir: str = "val", flat_val: bool = False) -> Path:
    """`root/<train_dir>/<wnid>/*.JPEG` and `root/<val_dir>/<wnid>/*.JPEG` (label = sorted position). The
    last train image of each class is a PNG and the first one greyscale. `flat_val=True` writes the raw
    flat val (`ILSVRC2012_val_%08d.JPEG`) with Kaggle's LOC_val_solution.csv in root."""
    root = Path(root)
    label = {c: i for i, c in enumerate(sorted(classes))}
    for wnid in classes:
        for k in range(n_train_per_class):
            ext = "png" if k == n_train_per_class - 1 else "JPEG"
            write_jpeg(root / train_dir / wnid / f"{wnid}_{k}.{ext}", label[wnid], size, grey=(k == 0),
                       seed=k)
    val_order = [w for _ in range(n_val_per_class) for w in classes]
    if flat_val:
        rows = [["ImageId", "PredictionString"]]
        for k, wnid in enumerate(val_order, 1):
            stem = f"ILSVRC2012_val_{k:08d}"
            write_jpeg(root / val_dir / f"{stem}.JPEG", label[wnid], size, seed=100 + k)
            rows.append([stem, f"{wnid} 1 2 10 12 {wnid} 3 3 9 9"])
        with open(root / "LOC_val_solution.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)
    else:
        for k, wnid in enumerate(val_order):
            write_jpeg(root / val_dir / wnid / f"ILSVRC2012_val_{k + 1:08d}.JPEG", label[wnid], size,
                       seed=100 + k)
    return root


# --- iNaturalist 2018 ----------------------------------------------------------------------------------


def write_inat2018(root: Path, num_classes: int = 3, n_train_per_class: int = 3, n_val_per_class: int = 2,
                   size: tuple[int, int] = (20, 15)) -> Path:
    """`root/train_val2018/<supercategory>/<category_id>/<hash>.jpg` shared by train and val, and COCO-style
    `train2018.json` / `val2018.json` (categories 0..num_classes-1; label = category_id)."""
    root = Path(root)
    supercategory = ["Plantae", "Aves", "Insecta"]
    categories = [{"id": c, "name": f"Species {c}", "supercategory": supercategory[c % 3], "kingdom": "k",
                   "phylum": "p", "class": "c", "order": "o", "family": "f", "genus": "g"}
                  for c in range(num_classes)]
    image_id = 0
    for split, per_class in (("train", n_train_per_class), ("val", n_val_per_class)):
        images, annotations = [], []
        # Categories listed in reverse so that file order and category order differ.
        for category in [c for _ in range(per_class) for c in reversed(range(num_classes))]:
            file_name = f"train_val2018/{supercategory[category % 3]}/{category}/{image_id:032x}.jpg"
            write_jpeg(root / file_name, category, size, seed=image_id)
            images.append({"id": image_id, "width": size[0], "height": size[1], "file_name": file_name,
                           "license": 1, "rights_holder": "fixture"})
            annotations.append({"id": 1000 + image_id, "image_id": image_id, "category_id": category})
            image_id += 1
        coco = {"info": {"year": 2018}, "licenses": [], "images": images,
                "annotations": list(reversed(annotations)), "categories": categories}
        (root / f"{split}2018.json").write_text(json.dumps(coco))
    return root


# --- Places205 -----------------------------------------------------------------------------------------

PLACES_IMAGES = "data/vision/torralba/deeplearning/images256"


def write_places205(root: Path, categories: Sequence[str] = ("a/abbey", "b/bedroom", "f/field/cultivated"),
                    n_train_per_class: int = 3, n_val_per_class: int = 2, size: int = 16) -> Path:
    """`root/trainvalsplit_places205/{train,val}_places205.csv` (space-separated `path label`, label =
    position in `categories`) and the images under `root/data/vision/torralba/deeplearning/images256/`."""
    root = Path(root)
    (root / "trainvalsplit_places205").mkdir(parents=True, exist_ok=True)
    k = 0
    for split, per_class in (("train", n_train_per_class), ("val", n_val_per_class)):
        lines = []
        for label in [c for _ in range(per_class) for c in range(len(categories))]:
            relpath = f"{categories[label]}/{k + 1:08d}.jpg"
            write_jpeg(root / PLACES_IMAGES / relpath, label, (size, size), seed=k)
            lines.append(f"{relpath} {label}\n")
            k += 1
        (root / "trainvalsplit_places205" / f"{split}_places205.csv").write_text("".join(lines))
    return root


# --- CUB-200-2011 --------------------------------------------------------------------------------------


def write_cub(root: Path, num_classes: int = 3, n_train_per_class: int = 2, n_test_per_class: int = 2,
              size: tuple[int, int] = (20, 15)) -> Path:
    """`root/CUB_200_2011/` with images/<NNN.Name>/*.jpg and images.txt, image_class_labels.txt (1-based),
    train_test_split.txt (train and test images interleaved), classes.txt, bounding_boxes.txt."""
    out = Path(root) / "CUB_200_2011"
    names = [f"{c + 1:03d}.Bird_{c + 1}" for c in range(num_classes)]
    images, labels, split, boxes = [], [], [], []
    # Train (1) and test (0) interleaved within each class, as in the real file.
    flags = ([1, 0] * min(n_train_per_class, n_test_per_class) + [1] * (n_train_per_class - n_test_per_class)
             + [0] * (n_test_per_class - n_train_per_class))
    image_id = 1
    for c, name in enumerate(names):
        for k, is_train in enumerate(flags):
            relpath = f"{name}/Bird_{c + 1}_{k:04d}_{image_id}.jpg"
            write_jpeg(out / "images" / relpath, c, size, seed=image_id)
            images.append(f"{image_id} {relpath}\n")
            labels.append(f"{image_id} {c + 1}\n")
            split.append(f"{image_id} {is_train}\n")
            boxes.append(f"{image_id} 1.0 2.0 10.0 8.0\n")
            image_id += 1
    classes = [f"{c + 1} {n}\n" for c, n in enumerate(names)]
    index_files = {"images.txt": images, "image_class_labels.txt": labels, "train_test_split.txt": split,
                   "bounding_boxes.txt": boxes, "classes.txt": classes}
    for name, lines in index_files.items():
        (out / name).write_text("".join(lines))
    (out / "README").write_text("CUB-200-2011 fixture\n")
    return out


# --- --tiny: every paper suite end to end on fixtures, in seconds per trial ------------------------------------

TINY_DIR = ".tiny"  # under the results folder: data/<dataset>/ (fixtures) and suites/<suite>.yaml
TINY_CLASSES = 2
TINY_TRAIN_PER_CLASS = 2
TINY_VAL_PER_CLASS = 1
TINY_BATCH = 2  # global; 4 train images -> 2 steps
TINY_SIZES = (32, 64, 96, 128, 160, 192, 224)  # the first one every backbone and method accepts is used
FIXTURE_VERSION = 1  # bump when a tiny fixture changes, so cached ones are rewritten
_MARKER = ".mixbench-fixture.json"

_TINY_WRITERS: dict[str, Callable[[Path], Path]] = {
    "cifar10": lambda d: write_cifar10(d, TINY_TRAIN_PER_CLASS, TINY_VAL_PER_CLASS, num_classes=TINY_CLASSES),
    "cifar100": lambda d: write_cifar100(d, TINY_TRAIN_PER_CLASS, TINY_VAL_PER_CLASS, num_classes=TINY_CLASSES),
    "tiny_imagenet": lambda d: write_tiny_imagenet(d, ("n01629819", "n01443537"), TINY_TRAIN_PER_CLASS,
                                                   TINY_VAL_PER_CLASS),
    "imagenet": lambda d: write_imagefolder(d, ("n01440764", "n01443537"), TINY_TRAIN_PER_CLASS, TINY_VAL_PER_CLASS),
    "inat2018": lambda d: write_inat2018(d, TINY_CLASSES, TINY_TRAIN_PER_CLASS, TINY_VAL_PER_CLASS),
    "places205": lambda d: write_places205(d, ("a/abbey", "a/airport_terminal"), TINY_TRAIN_PER_CLASS,
                                           TINY_VAL_PER_CLASS),
    "cub200": lambda d: write_cub(d, TINY_CLASSES, TINY_TRAIN_PER_CLASS, TINY_VAL_PER_CLASS),
    "fashion_mnist": lambda d: write_idx(d, TINY_TRAIN_PER_CLASS, TINY_VAL_PER_CLASS, num_classes=TINY_CLASSES),
    "mnist": lambda d: write_idx(d, TINY_TRAIN_PER_CLASS, TINY_VAL_PER_CLASS, num_classes=TINY_CLASSES),
}


def tiny_expected() -> Expected:
    """What every tiny fixture holds: 2 classes, 2 train and 1 val image each."""
    from mixbench.check import Expected

    return Expected(TINY_CLASSES, {"train": TINY_CLASSES * TINY_TRAIN_PER_CLASS,
                                   "val": TINY_CLASSES * TINY_VAL_PER_CLASS})


def _fixture_root(final: Path) -> Path | None:
    """The root inside a finished fixture tree of the current version, or None."""
    try:
        info = json.loads((final / _MARKER).read_text())
        return final / info["root"] if info.get("version") == FIXTURE_VERSION else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def tiny_fixture(dataset: str, cache: Path) -> Path:
    """The root of `dataset`'s tiny fixture under `cache`, written once (atomically: a half-written tree is never
    used, and concurrent writers agree on one)."""
    if dataset not in _TINY_WRITERS:
        raise ValueError(f"--tiny has no fixture writer for dataset {dataset!r}; it knows {', '.join(_TINY_WRITERS)}")
    final = Path(cache) / dataset
    root = _fixture_root(final)
    if root is not None:
        return root
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{dataset}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    written = _TINY_WRITERS[dataset](tmp)
    (tmp / _MARKER).write_text(json.dumps({"version": FIXTURE_VERSION, "dataset": dataset,
                                           "root": os.path.relpath(written, tmp)}) + "\n")
    shutil.rmtree(final, ignore_errors=True)  # an older version, or an interrupted write
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished first: use its tree
        shutil.rmtree(tmp, ignore_errors=True)
    root = _fixture_root(final)
    if root is None:
        raise RuntimeError(f"--tiny could not write the {dataset} fixture into {final}")
    return root


@dataclass
class TinyRun:
    """A suite's --tiny variant: where it was written, its fixtures' expected contents, the size chosen."""

    source: str  # the suite file it was made from
    suite_path: Path
    results_root: Path
    expected: dict[str, Expected]
    image_size: int


def tiny_image_size(trials: Sequence, largest: int) -> int:
    """The smallest of TINY_SIZES (up to the suite's own size) at which every backbone runs and every method's
    constraints hold (PuzzleMix grids, AutoMix stages); the suite's size when none does."""
    from mixbench.check import trial_problems

    distinct = {(t.backbone.name, json.dumps(t.backbone.kwargs, sort_keys=True), t.dataset.name, t.method,
                 json.dumps(t.hparams, sort_keys=True, default=str)): t for t in trials}
    for size in (s for s in TINY_SIZES if s <= largest):
        if all(not trial_problems(t, size) for t in distinct.values()):
            return size
    return largest


def tiny_overrides(image_size: int) -> dict[str, Any]:
    """What --tiny forces on every trial, as the suite's last override (so no override of the suite undoes it)."""
    return {
        "recipe.epochs": 1,
        "recipe.batch_size": TINY_BATCH,
        "recipe.image_size": image_size,
        "recipe.eval_batch_size": None,
        "recipe.num_workers": 0,
        "recipe.last_n": 1,
        "recipe.schedule.warmup_epochs": 0,
        "dataset.limit_per_class": TINY_TRAIN_PER_CLASS,
        "dataset.val_limit_per_class": TINY_VAL_PER_CLASS,
        "resources.gpus_per_trial": 1,
    }


def prepare_tiny(suite_path: str | Path, sets: list[str] | None = None, results: str | Path | None = None
                 ) -> TinyRun:
    """Write the fixtures and the --tiny variant of a suite; see docs/cost_model.md "--tiny" for what changes.

    The suite is validated and expanded first against the fixtures, so any mistake is reported against the
    user's file, not the generated one.
    """
    import yaml

    from mixbench.check import needs_root, trial_image_size
    from mixbench.suite import expand, load_suite

    suite = load_suite(suite_path, sets)
    results_root = Path(results or suite.results_dir)
    cache = results_root / TINY_DIR
    roots: dict[str, str] = {}
    expected: dict[str, Expected] = {}
    for ds in suite.datasets:
        if ds.name not in roots and needs_root(ds.name):
            roots[ds.name] = str(tiny_fixture(ds.name, cache / "data").resolve())
            expected[ds.name] = tiny_expected()
    trials = expand(suite, suite_path, roots)
    size = tiny_image_size(trials, max(trial_image_size(t) for t in trials))

    data = suite.model_dump(mode="json", exclude_unset=True)
    data["name"] = f"{suite.name}-tiny"
    data["description"] = (f"--tiny variant of {suite_path}, generated by mixbench: fixture data "
                           f"({TINY_CLASSES} classes x {TINY_TRAIN_PER_CLASS} train / {TINY_VAL_PER_CLASS} val "
                           f"images), 1 epoch, batch {TINY_BATCH}, {size} px, seed {suite.seeds[0]}, 1 device")
    data["datasets"] = [{**d, "root": roots.get(d["name"], d.get("root")),
                         "limit_per_class": TINY_TRAIN_PER_CLASS, "val_limit_per_class": TINY_VAL_PER_CLASS}
                        for d in suite.model_dump(mode="json")["datasets"]]
    data["seeds"] = [suite.seeds[0]]
    forced = tiny_overrides(size)
    recipe = data.setdefault("recipe", {})
    for key, value in forced.items():
        if key.startswith("recipe."):
            node = recipe
            *parents, leaf = key.split(".")[1:]
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    data["overrides"] = [*data.get("overrides", []), {"match": {}, "set": forced}]
    data["resources"] = {**data.get("resources", {}), "gpus_per_trial": 1}
    data["results_dir"] = str(results_root)
    out = cache / "suites" / f"{suite.name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Generated by `mixbench ... --tiny` from {suite_path}; do not edit (it is rewritten on every\n"
              f"# --tiny run). The last override forces the tiny recipe on every trial.\n")
    from mixbench.results import atomic_write_text

    atomic_write_text(out, header + yaml.safe_dump(data, sort_keys=False))
    return TinyRun(str(suite_path), out, results_root, expected, size)
