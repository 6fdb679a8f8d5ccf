"""`imagefolder`: the user's own data as an ImageFolder tree, `root/train/<class>/*` and `root/val/<class>/*`.

    datasets:
      - {name: imagefolder, root: /data/flowers, label: flowers}               # everything else inferred
      - {name: imagefolder, root: /data/xray, label: xray, in_chans: 1, mean: auto, std: auto, val_fraction: 0.2}

Classes are the train class folders, sorted (torchvision's ImageFolder convention); images are found at any depth
below a class folder, in sorted path order. `root` may also hold the class folders directly. Val is `val/` (or
`valid`, `validation`, `eval`, `evaluation`); without one, a stratified split of train seeded by `split_seed` puts
`val_fraction` (default 0.1, at least one image) of each class in val, the same for every trial.

Options (every other key of the suite entry; the resolved ones are recorded in the trial and enter its id, and
so does the class list, never the path):

* `image_size`: default inferred from the images (the median longest side of up to 32 of them, at most 224);
* `family`: the method-card family, default from the image size (≤ 32 px cifar, ≤ 64 px tiny, else imagenet);
  the PIL presets are the tiny family's up to 64 px, else ImageNet's (random-resized crop, resize + centre crop);
* `mean`, `std`: ImageNet's by default, a list per channel, or `auto`: computed once over every train pixel and
  cached under `$MIXBENCH_CACHE` (default `~/.cache/mixbench`) by the tree's fingerprint (each file's path, size
  and modification time: hashing every byte would cost as much as the statistic on each run);
* `in_chans`: 3 (grey, palette, CMYK and RGBA images become RGB; alpha is dropped) or 1 (everything becomes grey);
* `classes`: optional; when given, the train folders must be exactly these (a trial replayed on changed data
  fails instead of training a different head).

Bad trees fail before anything runs, in one line naming the path and the fix: no class folders, an empty class
folder, a val class missing from train or a train class missing from val, a file without an image extension
inside a class folder (hidden files are ignored), a symlink loop, a `val_fraction` outside (0, 1).

Corrupt images: `mixbench check` (the first step of every run) opens every image's header and reads its last bytes
(a JPEG must end with its EOI marker, a PNG with IEND), which finds unreadable and truncated files without decoding
them, and fails naming each. They are not skipped: a skipped file would make the benchmark's data differ from what
the user pointed at, silently, and from what `check` counted. A file that still fails to decode in training fails
the trial, naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mixbench.data.dataset import IMAGE_EXTENSIONS, FileDataset, MixDataset, is_image_file
from mixbench.data.imagefolder import SPLIT_FOLDERS, find_split_dir
from mixbench.data.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetInfo,
    DatasetSpec,
    OptionError,
    register_dataset,
)

NAME = "imagefolder"
DEFAULT_VAL_FRACTION = 0.1
MAX_INFERRED_SIZE = 224
SIZE_SAMPLE = 32
GREY_MEAN, GREY_STD = (0.449,), (0.226,)  # ImageNet's channel means, for 1-channel images (as timm)
FAMILIES = ("cifar", "tiny", "imagenet")
OPTIONS = ("image_size", "family", "mean", "std", "in_chans", "val_fraction", "split_seed", "classes")
SHOW_BAD = 5  # corrupt files named by check


def family_for_size(size: int) -> str:
    return "cifar" if size <= 32 else "tiny" if size <= 64 else "imagenet"


# ---- listing the tree ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    classes: list[str]
    train: list[tuple[str, int]]  # (path relative to root, label)
    val: list[tuple[str, int]]
    val_dir: str | None  # the val folder, or None for a split of train


def _files_under(folder: Path, root: Path) -> list[str]:
    """Image paths below a class folder (relative to root, sorted), following links; one-line errors for a
    symlink loop and for non-image files."""
    found: list[str] = []
    ancestors: list[str] = []

    def walk(directory: Path) -> None:
        real = os.path.realpath(directory)
        if real in ancestors:
            raise ValueError(f"{NAME}: {directory} is a symlink loop (it leads back to {real}); fix: remove the link "
                             f"or point it outside the tree")
        ancestors.append(real)
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.name.startswith(".") or entry.name == "Thumbs.db":
                continue  # .DS_Store, editors' swap files, Windows thumbnails
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=True):
                walk(path)
            elif not is_image_file(entry.name):
                raise ValueError(f"{NAME}: {path} is not an image file (extensions read: "
                                 f"{', '.join(IMAGE_EXTENSIONS)}); fix: move it out of the class folder")
            else:
                found.append(os.path.relpath(path, root))
        ancestors.pop()

    walk(folder)
    return found


def _class_files(split_dir: Path, root: Path) -> dict[str, list[str]]:
    out = {}
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir(follow_symlinks=True):
            if split_dir != root:  # files beside the train/ and val/ folders are none of our business
                raise ValueError(f"{NAME}: {entry.path} sits directly in {split_dir}, outside any class folder; fix: "
                                 f"move it into {split_dir}/<class>/")
            continue
        files = _files_under(Path(entry.path), root)
        if not files:
            raise ValueError(f"{NAME}: class folder {entry.path} holds no images; fix: add images or remove the "
                             f"folder")
        out[entry.name] = files
    return out


def _split(files: dict[str, list[str]], fraction: float, seed: int) -> tuple[list, list]:
    """Stratified: each class (in sorted order) gives round(fraction × n), at least 1, of its files to val, picked
    by one generator seeded with `seed`, so every trial of every suite sees the same split."""
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label, (name, paths) in enumerate(files.items()):
        if len(paths) < 2:
            raise ValueError(f"{NAME}: class {name} has {len(paths)} image, too few to split off a val image; fix: "
                             f"add images or give the tree a val/ folder")
        n_val = min(max(1, round(fraction * len(paths))), len(paths) - 1)
        picked = set(torch.randperm(len(paths), generator=gen)[:n_val].tolist())
        for i, path in enumerate(paths):
            (val if i in picked else train).append((path, label))
    return train, val


@lru_cache(maxsize=16)
def scan(root: str, val_fraction: float | None, split_seed: int) -> Listing:
    """The classes and the train/val files of a tree (cached: resolving and reading a split list it once)."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{NAME}: {base} is not a folder; fix: point root: at the folder holding train/ "
                                f"(and val/), or the class folders")
    train_dir, val_dir = find_split_dir(base, "train"), find_split_dir(base, "val")
    if train_dir is None and val_dir is not None:
        raise FileNotFoundError(f"{NAME}: {base} has {val_dir.name}/ but no train/ folder; fix: add train/<class>/ "
                                f"folders (or name it one of {', '.join(SPLIT_FOLDERS['train'])})")
    train_files = _class_files(train_dir or base, base)
    if not train_files:
        raise FileNotFoundError(f"{NAME}: no class folders under {train_dir or base}; fix: lay images out as "
                                f"{base}/train/<class>/<image> (val/<class>/ optional)")
    classes = list(train_files)
    if val_dir is None:
        train, val = _split(train_files, DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction, split_seed)
        return Listing(classes, train, val, None)
    if val_fraction is not None:
        raise OptionError("val_fraction", f"{NAME}: {base} has a {val_dir.name}/ folder, so nothing is split off "
                                          f"train; fix: remove val_fraction (or the {val_dir.name}/ folder)")
    val_files = _class_files(val_dir, base)
    for name in val_files:
        if name not in train_files:
            raise ValueError(f"{NAME}: {val_dir / name} is a class missing from {train_dir}; fix: add "
                             f"{train_dir / name}/ or remove the val folder")
    for name in classes:
        if name not in val_files:
            raise ValueError(f"{NAME}: class {name} of {train_dir} has no folder in {val_dir}; fix: add "
                             f"{val_dir / name}/ with its val images (or remove {val_dir.name}/ to split train)")
    index = {name: i for i, name in enumerate(classes)}
    train = [(p, index[name]) for name, paths in train_files.items() for p in paths]
    val = [(p, index[name]) for name, paths in val_files.items() for p in paths]
    return Listing(classes, train, val, val_dir.name)


# ---- what the images say ---------------------------------------------------------------------------------------


def inferred_size(root: Path, relpaths: list[str]) -> int:
    step = max(1, len(relpaths) // SIZE_SAMPLE)
    sides = []
    for relpath in relpaths[::step][:SIZE_SAMPLE]:
        try:
            with Image.open(root / relpath) as img:  # reads the header only
                sides.append(max(img.size))
        except (OSError, ValueError):
            continue  # `check` names every unreadable file (DatasetSpec.verify)
    return min(MAX_INFERRED_SIZE, int(statistics.median(sides))) if sides else MAX_INFERRED_SIZE


def fingerprint(root: Path, listing: Listing, mode: str) -> str:
    h = hashlib.sha256(mode.encode())
    for relpath, label in listing.train:
        st = os.stat(root / relpath)
        h.update(f"{relpath}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("MIXBENCH_CACHE") or Path.home() / ".cache" / "mixbench")


def channel_stats(root: Path, listing: Listing, mode: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1]) over every train pixel, computed once per tree fingerprint."""
    path = cache_dir() / "stats" / f"{fingerprint(root, listing, mode)}.json"
    try:
        cached = json.loads(path.read_text())
        return tuple(cached["mean"]), tuple(cached["std"])
    except (OSError, ValueError, KeyError):
        pass
    total = total_sq = 0.0
    pixels = 0
    for relpath, _ in listing.train:
        try:
            with Image.open(root / relpath) as img:
                array = np.asarray(img.convert(mode), dtype=np.float64).reshape(-1, len(mode)) / 255.0
        except (OSError, ValueError) as err:
            raise OSError(f"{NAME}: mean/std auto cannot read {root / relpath} ({err}); fix: re-encode or delete the "
                          f"file") from err
        total = total + array.sum(0)
        total_sq = total_sq + np.square(array).sum(0)
        pixels += array.shape[0]
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean**2, 0.0))
    stats = (tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std))
    from mixbench.results import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"mean": stats[0], "std": stats[1], "root": str(root),
                                        "images": len(listing.train)}) + "\n")
    return stats


# ---- the spec ----------------------------------------------------------------------------------------------------


def _number(options: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = options.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (kind, int))):
        raise OptionError(key, f"{NAME}: {key} must be a {kind.__name__}, got {value!r}")
    return value


def _channels(options: Mapping[str, Any], key: str, in_chans: int) -> tuple[float, ...] | str | None:
    value = options.get(key)
    if value is None or value == "auto":
        return value
    values = [value] if isinstance(value, (int, float)) else value
    if (not isinstance(values, list) or len(values) != in_chans
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise OptionError(key, f"{NAME}: {key} must be 'auto' or {in_chans} number(s) in [0, 1], one per channel; "
                               f"got {value!r}")
    if key == "std" and min(values) <= 0:
        raise OptionError(key, f"{NAME}: std must be positive; got {value!r}")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class ImageFolderSpec(DatasetSpec):
    def resolve(self, options: Mapping[str, Any], root: Path | None) -> tuple[DatasetInfo, dict[str, Any]]:
        for key in options:
            if key not in OPTIONS:
                raise OptionError(key, f"unknown key for dataset {NAME}; fix: remove it (imagefolder takes "
                                       f"{', '.join(OPTIONS)}, besides root, label and the limits)")
        val_fraction = _number(options, "val_fraction", float, None)
        if val_fraction is not None and not 0 < val_fraction < 1:
            raise OptionError("val_fraction", f"{NAME}: val_fraction must be in (0, 1), got {val_fraction}; fix: "
                                              f"e.g. 0.1 keeps a tenth of each class for val")
        split_seed = _number(options, "split_seed", int, 0)
        in_chans = options.get("in_chans", 3)
        if in_chans not in (1, 3) or isinstance(in_chans, bool):
            raise OptionError("in_chans", f"{NAME}: in_chans must be 1 (grey) or 3 (RGB), got {in_chans!r}")
        image_size = _number(options, "image_size", int, None)
        if image_size is not None and image_size <= 0:
            raise OptionError("image_size", f"{NAME}: image_size must be positive, got {image_size}")
        family = options.get("family")
        if family is not None and family not in FAMILIES:
            raise OptionError("family", f"{NAME}: family must be one of {', '.join(FAMILIES)}, got {family!r}")
        mean, std = _channels(options, "mean", in_chans), _channels(options, "std", in_chans)
        if (mean == "auto") != (std == "auto"):
            raise OptionError("std" if mean == "auto" else "mean",
                              f"{NAME}: mean and std are computed together; fix: set both to auto, or neither")
        if root is None:
            raise FileNotFoundError(f"{NAME}: no data root given; fix: set root: in the suite's entry (or "
                                    f"--data-root LABEL=PATH)")
        root = Path(root).expanduser()
        listing = scan(str(root), val_fraction, split_seed)
        wanted = options.get("classes")
        if wanted is not None and list(wanted) != listing.classes:
            raise OptionError("classes", f"{NAME}: {root} holds {len(listing.classes)} classes "
                                         f"({', '.join(listing.classes[:5])}, ...), not the {len(wanted)} the trial "
                                         f"was made for; fix: point root at the same data, or drop classes:")
        image_size = image_size or inferred_size(root, [p for p, _ in listing.train])
        family = family or family_for_size(image_size)
        mode = "L" if in_chans == 1 else "RGB"
        if mean == "auto":
            mean, std = channel_stats(root, listing, mode)
        default_mean, default_std = (GREY_MEAN, GREY_STD) if in_chans == 1 else (IMAGENET_MEAN, IMAGENET_STD)
        split = {} if listing.val_dir else {
            "val_fraction": DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction, "split_seed": split_seed}
        info = DatasetInfo(
            name=NAME, family=family, num_classes=len(listing.classes), image_size=image_size, in_chans=in_chans,
            mean=mean or default_mean, std=std or default_std, in_memory=False, default_root=None,
            expected_counts={"train": len(listing.train), "val": len(listing.val)},
            transforms="imagenet" if image_size > 64 else "tiny", options={"val_fraction": val_fraction,
                                                                           "split_seed": split_seed})
        return info, {"classes": listing.classes, **split}

    def verify(self, ds: MixDataset) -> list[str]:
        bad = []
        for i in range(len(ds)):
            problem = image_problem(Path(ds.path(i)))
            if problem:
                bad.append(f"{NAME}: {ds.path(i)} {problem}; fix: re-encode or delete the file")
        return bad[:SHOW_BAD] + ([f"{NAME}: ... and {len(bad) - SHOW_BAD} more unreadable images"]
                                 if len(bad) > SHOW_BAD else [])

    def where(self, root: Path, split: str) -> tuple[str, Path]:
        return "class folders", find_split_dir(root, "train") or root


_TAILS = {"JPEG": (b"\xff\xd9",), "PNG": (b"IEND\xaeB`\x82",)}


def image_problem(path: Path) -> str | None:
    """Why `path` cannot be decoded, found from its header and its last bytes alone; None when it looks whole."""
    try:
        with Image.open(path) as img:  # parses the header; no pixel is decoded
            fmt = img.format
    except (OSError, ValueError) as err:
        return f"is not a readable image ({type(err).__name__}: {err})"
    tails = _TAILS.get(fmt or "")
    if tails:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 64))
            end = f.read().rstrip(b"\0\n\r ")  # some writers pad after the end marker
        if not any(end.endswith(t) for t in tails):
            return f"is a truncated {fmt} (no end marker)"
    return None


def read_folder(info: DatasetInfo, root: Path, split: str, *, image_size: int, limit_per_class: int | None,
                seed: int = 0) -> FileDataset:
    listing = scan(str(root), info.options.get("val_fraction"), info.options.get("split_seed", 0))
    items = listing.train if split == "train" else listing.val
    return FileDataset(info, root, split, listing.classes, root, [p for p, _ in items], [lb for _, lb in items],
                       image_size, limit_per_class)


def write_user_tree(root: Path, counts: Mapping[str, int] | None = None, val_counts: Mapping[str, int] | None = None,
                    size: tuple[int, int] = (20, 15)) -> Path:
    """A user's tree: `root/train/<class>/` with uneven classes and `root/val/<class>/` when `val_counts` is given.
    Image k of a class is, by k % 4: an RGB JPEG (`.jpg`; a palette PNG when k = 4), a grey PNG, an RGB `.JPEG` in a
    `nested/` sub-folder, an RGBA PNG. Each image's mean colour is `class_colour(label)`, label = sorted position."""
    from mixbench.data.fixtures import write_jpeg

    root = Path(root)
    counts = counts or {"tulip": 5, "daisy": 3, "rose": 4}
    order = {name: i for i, name in enumerate(sorted(counts))}
    for split, per_class in (("train", counts), ("val", val_counts or {})):
        for name, n in per_class.items():
            for k in range(n):
                kind = "palette" if k == 4 else ("rgb", "grey", "nested", "rgba")[k % 4]
                ext = {"rgb": "jpg", "nested": "JPEG"}.get(kind, "png")
                path = root / split / name / ("nested" if kind == "nested" else "") / f"{name}_{k}.{ext}"
                write_jpeg(path, order[name], size, grey=kind == "grey", seed=k + 50 * (split == "val"))
                if kind in ("rgba", "palette"):
                    with Image.open(path) as img:
                        converted = img.convert("RGBA") if kind == "rgba" else img.quantize(16)
                    converted.save(path)
    return root


def _tiny_fixture(folder: Path, classes: int, train: int, val: int) -> Path:
    names = [f"class_{c}" for c in range(classes)]
    return write_user_tree(folder, dict.fromkeys(names, train), dict.fromkeys(names, val))


IMAGEFOLDER = register_dataset(ImageFolderSpec(
    DatasetInfo(name=NAME, family="imagenet", num_classes=0, image_size=224, in_chans=3, mean=IMAGENET_MEAN,
                std=IMAGENET_STD, in_memory=False, default_root=None, expected_counts={}),
    read_folder, _tiny_fixture))
