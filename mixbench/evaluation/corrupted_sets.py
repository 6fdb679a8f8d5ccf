"""Corrupted copies of a validation split, made once and kept on disk for every trial that evaluates on it.

A set is the split's clean uint8 images (at the resolution the dataset yields them) under one corruption and
severity, with the parameters of the protocol for that resolution (`corruptions.protocol_for`). Its file is
`<cache>/<dataset>-<content>/<corruption>-<severity>-s<seed>-<tag>.npy`, where <content> hashes the clean
images and labels (a different subset or copy of the data gets its own folder) and <tag> is
`corruptions.version_tag(protocol)`: the definitions' version (a changed definition makes new files) and the
protocol (`v1` for CIFAR-C, `v1-tiny_imagenet`, `v1-imagenet`); frost's name also carries a hash of the frost
photographs it was made from. Files are written to a temporary name and renamed, so a set is either
whole or absent, and two processes making the same set at once both write the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from mixbench.data import MixDataset, batches
from mixbench.evaluation import corruptions

CHUNK = 512  # images corrupted per call (the seeds are per image, so this changes nothing in the result)


def clean_split(ds: MixDataset) -> tuple[np.ndarray, np.ndarray]:
    """Every image (N,C,H,W uint8) and label of a split, in file order (its eval view for file datasets)."""
    if hasattr(ds, "images"):
        return ds.images.numpy(), ds.labels.numpy()
    images, labels = zip(*batches(ds, 256, train=False, seed=0, epoch=0), strict=True)
    return torch.cat(images).numpy(), torch.cat(labels).numpy()


def content_hash(images: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256(f"{images.shape}:{images.dtype}:{labels.shape}".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).astype(np.int64).tobytes())
    return digest.hexdigest()[:16]


def save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CorruptedSets:
    """The corrupted sets of one clean split, read from the cache or made (and cached) on first use."""

    def __init__(self, cache: Path, dataset: str, images: np.ndarray, labels: np.ndarray, seed: int = 0):
        self.images, self.labels, self.seed = images, labels, seed
        self.folder = Path(cache) / f"{dataset}-{content_hash(images, labels)}"
        self.protocol = corruptions.protocol_for(max(images.shape[-2:]))

    def path(self, name: str, severity: int) -> Path:
        extra = f"-f{corruptions.frost_fingerprint()}" if name == "frost" else ""
        return self.folder / f"{name}-{severity}-s{self.seed}-{corruptions.version_tag(self.protocol)}{extra}.npy"

    def get(self, name: str, severity: int) -> np.ndarray:
        path = self.path(name, severity)
        if path.is_file():
            return np.load(path)
        made = _make(self.images, name, severity, self.seed)
        save_atomic(path, made)
        return made

    def prepare(self, wanted: list[tuple[str, int]], jobs: int) -> None:
        """Make the missing sets of `wanted` in `jobs` processes (each set is a function of its seed alone, so
        this changes nothing in them; only how long the first evaluation waits)."""
        from concurrent.futures import ProcessPoolExecutor

        missing = [(n, s) for n, s in wanted if not self.path(n, s).is_file()]
        if jobs <= 1 or len(missing) <= 1:
            return
        with ProcessPoolExecutor(min(jobs, len(missing))) as pool:
            futures = {pool.submit(_make, self.images, n, s, self.seed): (n, s) for n, s in missing}
            for future, (name, severity) in futures.items():
                save_atomic(self.path(name, severity), future.result())


def _make(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    return np.concatenate([corruptions.corrupt(images[start:start + CHUNK], name, severity, seed, start=start)
                           for start in range(0, len(images), CHUNK)])
