"""Train-loading throughput of mixbench.data: images/s with 0, 1 and 2 loader workers.

Writes real JPEGs to a temporary folder in two layouts, an ImageFolder (ImageNet-like 500x375 photos,
decoded and RandomResizedCrop'ed to 224) and Tiny-ImageNet (64x64, cropped to 64), then times one
training epoch (or more, to fill 2 s) of `mixbench.data.batches` for each worker count, after a short
warm-up that starts the (persistent) workers. An in-memory row (synthetic, sliced tensors) is given
for contrast.

    python benchmarks/bench_loader.py [--images 2000] [--batch-size 64] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mixbench.data import batches, load_split, num_batches

WARMUP_BATCHES = 3


def photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth random colour fields plus grain: JPEG sizes and decode times near those of real photos."""
    coarse = Image.fromarray(rng.integers(0, 256, (height // 12, width // 12, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def write_imagefolder(root: Path, n_images: int, n_classes: int, size: tuple[int, int], seed: int = 0
                      ) -> None:
    rng = np.random.default_rng(seed)
    for k in range(n_images):
        folder = root / "train" / f"n{k % n_classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        photo_like(rng, *size).save(folder / f"img_{k:06d}.JPEG", quality=90)


def write_tiny(root: Path, n_images: int, n_classes: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    wnids = [f"n{c:08d}" for c in range(n_classes)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    for k in range(n_images):
        wnid = wnids[k % n_classes]
        folder = root / "train" / wnid / "images"
        folder.mkdir(parents=True, exist_ok=True)
        photo_like(rng, 64, 64).save(folder / f"{wnid}_{k}.JPEG", quality=90)


def images_per_second(ds, batch_size: int, workers: int, min_seconds: float = 2.0) -> tuple[float, float]:
    """(images/s, ms/batch) over whole training epochs (at least `min_seconds` of them), after warming the
    workers up on a few batches of epoch 0."""
    for _ in itertools.islice(batches(ds, batch_size, train=True, seed=0, epoch=0, num_workers=workers),
                              WARMUP_BATCHES):
        pass
    images = n_batches = 0
    start = time.perf_counter()
    for epoch in itertools.count(1):
        images += sum(len(labels) for _, labels in batches(ds, batch_size, train=True, seed=0, epoch=epoch,
                                                           num_workers=workers))
        n_batches += num_batches(ds, batch_size, train=True)
        if time.perf_counter() - start >= min_seconds:
            break
    seconds = time.perf_counter() - start
    return images / seconds, 1000 * seconds / n_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images per layout (default 2000)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="mixbench-bench-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        write_imagefolder(tmp / "imagenet", args.images, args.classes, (500, 375))
        write_tiny(tmp / "tiny-imagenet-200", args.images, args.classes)
        written = time.perf_counter() - start
        mb = sum(f.stat().st_size for f in (tmp / "imagenet").rglob("*.JPEG")) / 2**20
        datasets = [
            ("imagenet (ImageFolder)", "500x375 JPEG", "224 RandomResizedCrop+flip",
             load_split("imagenet", tmp / "imagenet", "train")),
            ("tiny_imagenet (raw layout)", "64x64 JPEG", "64 RandomResizedCrop+flip",
             load_split("tiny_imagenet", tmp, "train")),
        ]
        for name, on_disk, output, ds in datasets:
            for workers in args.workers:
                rate, ms = images_per_second(ds, args.batch_size, workers)
                rows.append((name, on_disk, output, str(workers), rate, ms))
            ds.close()  # stop this dataset's persistent workers before timing the next one
        synthetic = load_split("synthetic", None, "train")
        rows.append(("synthetic (in memory)", "uint8 tensor", "32 (crop/flip on device)", "-",
                     *images_per_second(synthetic, args.batch_size, 0)))

    print(f"mixbench.data train loading: {args.images} images per layout ({mb:.0f} MB of 500x375 JPEGs, "
          f"written in {written:.0f} s), batch {args.batch_size}, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}\n")
    print("| dataset | on disk | output | workers | images/s | ms/batch |")
    print("|---|---|---|---:|---:|---:|")
    for name, on_disk, output, workers, rate, ms in rows:
        print(f"| {name} | {on_disk} | {output} | {workers} | {rate:,.0f} | {ms:.1f} |")


if __name__ == "__main__":
    main()
