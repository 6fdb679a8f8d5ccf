"""mixbench.data: dataset readers (one module per on-disk layout), PIL presets, batching, device augmentation.

    info = dataset_info("cifar10")
    train = load_split("cifar10", root, "train")
    augment = device_augment(info, train=True, image_size=info.image_size)
    for images, labels in batches(train, 128, train=True, seed=0, epoch=epoch):
        x = augment(images.to(device), gen)
"""

from mixbench.data.dataset import FileDataset, InMemoryDataset, MixDataset
from mixbench.data.device_augment import DeviceAugment, device_augment
from mixbench.data.loader import batches, epoch_seed, num_batches
from mixbench.data.registry import DatasetInfo, dataset_info, list_datasets, load_split

__all__ = [
    "DatasetInfo",
    "DeviceAugment",
    "FileDataset",
    "InMemoryDataset",
    "MixDataset",
    "batches",
    "dataset_info",
    "device_augment",
    "epoch_seed",
    "list_datasets",
    "load_split",
    "num_batches",
]
