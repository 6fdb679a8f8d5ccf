"""Miniature datasets in each dataset's real on-disk layout: the fixtures of the tests and of `--tiny`.

The writers (moved here from tests/fixtures_data.py, which re-exports them) take the folder to write into and
return the path to pass to `load_split` as root. The images of the file datasets are small noisy JPEGs whose
mean colour is `class_colour(label)`, where `label` is the class index mixbench's reader must assign (sorted
wnids, category id, class id - 1, ...), so a test can check that each image came with the right label.

Each dataset's spec (`DatasetSpec.write_tiny`, in its reader's module) calls one of these writers with the
sizes `--tiny` asks for (`mixbench.tiny`); datasets added later may keep their writer in their own module.
"""

from __future__ import annotations

import csv
import gzip
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

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
    from mixbench.data.inaturalist import write_inat

    return write_inat(root, "2018", num_classes, n_train_per_class, n_val_per_class, size)


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
