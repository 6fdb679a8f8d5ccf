"""CIFAR-10 / CIFAR-100 from the "python version" pickles (`cifar-10-batches-py/`, `cifar-100-python/`).

Each batch is a Python-2 pickle of a dict whose `data` is uint8 N×3072 (1024 R, 1024 G, 1024 B, each a
32×32 row-major plane), so `reshape(N, 3, 32, 32)` is already C,H,W. Labels are `labels` (CIFAR-10) or
`fine_labels` (CIFAR-100, the 100-way task). Class index = the label stored in the file; `classes` are
`label_names` / `fine_label_names` from the meta file, in that order.

torchvision's reader md5-checks every file even with download=False, which rejects test fixtures, hence
this one. `root` may be the batches folder itself or the folder holding it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from mixbench.data.dataset import InMemoryDataset, locate, missing
from mixbench.data.registry import CIFAR_MEAN, CIFAR_STD, DatasetInfo, DatasetSpec, register_dataset

_LAYOUT = {
    # name: (folder, {split: batch files}, meta file, label key, class-names key)
    "cifar10": ("cifar-10-batches-py",
                {"train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"]},
                "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", {"train": ["train"], "val": ["test"]}, "meta", "fine_labels",
                 "fine_label_names"),
}


# The only callables a CIFAR batch file names: numpy's array reconstruction (numpy 1 and 2 spell the module
# differently) and, in files re-pickled by Python 3 at protocol 2, `_codecs.encode` and `bytes` for bytes.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5 arrays
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("__builtin__", "bytes"), ("builtins", "bytes"),  # how Python 3 writes a bytes object at protocol 2
}


class _CifarUnpickler(pickle.Unpickler):
    """Admits what CIFAR's batch files hold (dicts, lists, strings, bytes, numbers, numpy arrays) and nothing
    that runs code: a dataset folder on a shared filesystem is no reason to execute what someone put there."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never holds")
        return super().find_class(module, name)


def _load_pickle(path: Path, dataset: str) -> dict:
    with open(path, "rb") as f:
        try:
            # The files were written by Python 2: latin1 maps its byte strings 1:1 (and numpy arrays load).
            data = _CifarUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
            raise ValueError(f"{dataset}: {path} is not a CIFAR pickle, refused ({err}); fix: re-extract the "
                             f"{dataset} python-version archive") from None
    if not isinstance(data, dict):
        raise ValueError(f"{dataset}: {path} is not a CIFAR pickle (it holds a {type(data).__name__}, not a dict); "
                         f"fix: re-extract the {dataset} python-version archive")
    return data


def read_cifar(info: DatasetInfo, root: Path, split: str, *, image_size: int, limit_per_class: int | None,
               seed: int = 0) -> InMemoryDataset:
    folder, splits, meta_name, label_key, names_key = _LAYOUT[info.name]
    batches_dir = locate(root, folder, meta_name)
    if batches_dir is None:
        raise missing(info.name, f"{folder}/{meta_name}", root,
                      f"extract the python-version archive there and pass --data-root {info.name}=PATH")
    classes = [str(n) for n in _load_pickle(batches_dir / meta_name, info.name)[names_key]]
    images, labels = [], []
    for name in splits[split]:
        path = batches_dir / name
        if not path.is_file():
            raise missing(info.name, name, batches_dir, "the extraction is incomplete; re-extract it")
        batch = _load_pickle(path, info.name)
        data = np.asarray(batch["data"], dtype=np.uint8)
        batch_labels = list(batch[label_key])
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != len(batch_labels):
            raise ValueError(f"{info.name}: {path} holds data {data.shape} and {len(batch_labels)} labels; "
                             f"expected N×3072 with N labels; fix: re-extract the archive")
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32)))
        labels.extend(batch_labels)
    return InMemoryDataset(info, root, split, classes, torch.cat(images),
                           torch.tensor(labels, dtype=torch.int64), image_size, limit_per_class)


def _tiny_cifar10(folder: Path, classes: int, train: int, val: int) -> Path:
    from mixbench.data.fixtures import write_cifar10

    return write_cifar10(folder, train, val, num_classes=classes)


def _tiny_cifar100(folder: Path, classes: int, train: int, val: int) -> Path:
    from mixbench.data.fixtures import write_cifar100

    return write_cifar100(folder, train, val, num_classes=classes)


def _cifar_info(name: str, num_classes: int) -> DatasetInfo:
    return DatasetInfo(name=name, family="cifar", num_classes=num_classes, image_size=32, in_chans=3,
                       mean=CIFAR_MEAN, std=CIFAR_STD, in_memory=True, default_root=None,
                       expected_counts={"train": 50_000, "val": 10_000})


CIFAR10 = register_dataset(DatasetSpec(_cifar_info("cifar10", 10), read_cifar, _tiny_cifar10, "CIFAR-10",
                                       test_is_val=True))
CIFAR100 = register_dataset(DatasetSpec(_cifar_info("cifar100", 100), read_cifar, _tiny_cifar100, "CIFAR-100",
                                        test_is_val=True))
