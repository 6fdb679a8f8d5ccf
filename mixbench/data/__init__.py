"""mixbench.data: dataset readers (one module per on-disk layout, each declaring its `DatasetSpec`), PIL presets,
batching, device augmentation.

    info = dataset_info("cifar10")
    train = load_split("cifar10", root, "train")
    augment = device_augment(info, train=True, image_size=info.image_size)
    for images, labels in batches(train, 128, train=True, seed=0, epoch=epoch):
        x = augment(images.to(device), gen)
"""

from mixbench.data.dataset import FileDataset, InMemoryDataset, MixDataset
from mixbench.data.device_augment import DeviceAugment, device_augment
from mixbench.data.loader import batches, epoch_seed, num_batches
from mixbench.data.registry import (
    DatasetInfo,
    DatasetSpec,
    dataset_info,
    dataset_spec,
    list_datasets,
    load_split,
    register_dataset,
)

__all__ = [
    "DatasetInfo",
    "DatasetSpec",
    "DeviceAugment",
    "FileDataset",
    "InMemoryDataset",
    "MixDataset",
    "batches",
    "dataset_info",
    "dataset_spec",
    "device_augment",
    "epoch_seed",
    "list_datasets",
    "load_split",
    "num_batches",
    "register_dataset",
]
