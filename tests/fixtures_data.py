"""The dataset fixture writers for tests; they live in `mixbench.data.fixtures`, which `--tiny` also uses."""

from mixbench.data.fixtures import (
    IDX_MAGIC,
    PLACES_IMAGES,
    class_colour,
    write_cifar10,
    write_cifar100,
    write_cifar_batch,
    write_cub,
    write_idx,
    write_idx_file,
    write_imagefolder,
    write_inat2018,
    write_jpeg,
    write_places205,
    write_tiny_imagenet,
)

__all__ = [
    "IDX_MAGIC",
    "PLACES_IMAGES",
    "class_colour",
    "write_cifar10",
    "write_cifar100",
    "write_cifar_batch",
    "write_cub",
    "write_idx",
    "write_idx_file",
    "write_imagefolder",
    "write_inat2018",
    "write_jpeg",
    "write_places205",
    "write_tiny_imagenet",
]
