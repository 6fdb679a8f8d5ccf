"""mixbench.data: every reader on a miniature copy of its real layout, batching, device augmentation."""

from __future__ import annotations

import itertools
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import (
    class_colour,
    write_cifar10,
    write_cifar100,
    write_cifar_batch,
    write_cub,
    write_idx,
    write_idx_file,
    write_imagefolder,
    write_inat2018,
    write_places205,
    write_tiny_imagenet,
)

from mixbench.data import (
    DeviceAugment,
    FileDataset,
    InMemoryDataset,
    batches,
    dataset_info,
    device_augment,
    list_datasets,
    load_split,
    num_batches,
)
from mixbench.data.transforms import random_resized_crop_box

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def assert_class_colours(ds: FileDataset) -> None:
    """Each image's mean colour is its label's fixture colour (grey fixture images: equal channels)."""
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        if torch.equal(image[0], image[1]) and torch.equal(image[1], image[2]):
            continue
        mean = image.float().mean(dim=(1, 2))
        expected = torch.tensor(class_colour(label), dtype=torch.float32)
        assert torch.allclose(mean, expected, atol=14), (i, label, mean, expected)


# --- registry -----------------------------------------------------------------------------------------------


def test_registry_lists_every_dataset_with_its_conventions():
    assert list_datasets() == ["aircraft", "cifar10", "cifar100", "cub200", "fashion_mnist", "imagefolder", "imagenet",
                               "inat2017", "inat2018", "mnist", "places205", "synthetic", "tiny_imagenet"]
    families = {name: dataset_info(name).family for name in list_datasets() if name != "imagefolder"}
    assert families == {"cifar10": "cifar", "cifar100": "cifar", "fashion_mnist": "cifar", "mnist": "cifar",
                        "synthetic": "cifar", "tiny_imagenet": "tiny", "imagenet": "imagenet",
                        "inat2018": "imagenet", "places205": "imagenet", "cub200": "imagenet",
                        "aircraft": "imagenet", "inat2017": "imagenet"}
    fmnist = dataset_info("fashion_mnist")
    assert (fmnist.in_chans, fmnist.image_size, fmnist.mean, fmnist.std) == (1, 28, (0.2860,), (0.3530,))
    assert fmnist.default_root == "/usr/share/datasets/fashion-mnist" and fmnist.in_memory
    assert dataset_info("cifar100").std == (0.2023, 0.1994, 0.2010)
    assert dataset_info("inat2018").num_classes == 8142
    assert dataset_info("imagenet").expected_counts == {"train": 1_281_167, "val": 50_000}
    assert not dataset_info("tiny_imagenet").in_memory and dataset_info("synthetic").default_root is None


def test_unknown_dataset_and_split_are_one_line_errors():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar11'; registered: aircraft, cifar10, cifar100, .* "
                                         r"\(or give one as 'package.module:attr'\)$"):
        dataset_info("cifar11")
    with pytest.raises(ValueError, match=r"imagenet: unknown split 'test'; use one of train, val$"):
        load_split("imagenet", "/nonexistent", "test")


@pytest.mark.parametrize("name, looked_for, fix", [
    ("cifar10", "cifar-10-batches-py/batches.meta", "--data-root cifar10=PATH"),
    ("cifar100", "cifar-100-python/meta", "--data-root cifar100=PATH"),
    ("fashion_mnist", "train-images-idx3-ubyte.gz",
     "install Debian's dataset-fashion-mnist or pass --data-root fashion_mnist=PATH"),
    ("tiny_imagenet", "tiny-imagenet-200/wnids.txt", "--data-root tiny_imagenet=PATH"),
    ("imagenet", r"train folder \(train or training\)", "--data-root imagenet=PATH"),
    ("inat2018", "train2018.json", "--data-root inat2018=PATH"),
    ("places205", "trainvalsplit_places205/train_places205.csv", "--data-root places205=PATH"),
    ("cub200", "CUB_200_2011/images.txt", "--data-root cub200=PATH"),
])
def test_missing_data_names_dataset_path_and_fix(tmp_path, name, looked_for, fix):
    with pytest.raises(FileNotFoundError, match=rf"^{name}: no {looked_for} under {tmp_path}; .*{fix}") as e:
        load_split(name, tmp_path, "train")
    assert "\n" not in str(e.value)


def test_missing_root_without_default_asks_for_one():
    with pytest.raises(FileNotFoundError, match=r"^cifar10: no data root given; pass --data-root cifar10="):
        load_split("cifar10", None, "train")


# --- CIFAR --------------------------------------------------------------------------------------------------


def test_cifar10_reads_batches_labels_and_pixels(tmp_path):
    folder = write_cifar10(tmp_path, n_per_class=4, n_test_per_class=2, num_classes=3)
    # A test batch whose three planes are distinct, to pin the R, G, B order of the 3072 bytes.
    images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    images[:, 0] = np.arange(32 * 32).reshape(32, 32) % 251
    images[:, 1] = 7
    images[1, 2] = 200
    write_cifar_batch(folder / "test_batch", images, [9, 4])

    train = load_split("cifar10", folder, "train")
    assert isinstance(train, InMemoryDataset) and len(train) == 12 and train.split == "train"
    assert train.images.shape == (12, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [0, 1, 2] * 4 and train.labels.dtype == torch.int64
    assert train.classes[:3] == ["airplane", "automobile", "bird"] and len(train.classes) == 10

    test = load_split("cifar10", tmp_path, "test")  # the parent folder, and "test" as an alias of val
    assert test.split == "val" and test.labels.tolist() == [9, 4]
    assert torch.equal(test.images[0, 0], torch.from_numpy(images[0, 0]))
    assert (test.images[:, 1] == 7).all()
    assert (test.images[0, 2] == 0).all() and (test.images[1, 2] == 200).all()
    image, label = test[1]
    assert label == 4 and torch.equal(image, torch.from_numpy(images[1]))


def test_cifar100_uses_fine_labels_and_names(tmp_path):
    folder = write_cifar100(tmp_path, n_per_class=2, n_test_per_class=1, num_classes=5)
    train, val = load_split("cifar100", folder, "train"), load_split("cifar100", tmp_path, "val")
    assert len(train) == 10 and len(val) == 5
    assert train.labels.tolist() == [0, 1, 2, 3, 4] * 2
    assert len(train.classes) == 100 and train.classes[3] == "fine_03"


def test_cifar_rejects_a_batch_of_the_wrong_shape(tmp_path):
    folder = write_cifar10(tmp_path)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), dtype=np.uint8), "labels": [0, 1]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"cifar10: .*test_batch holds data \(2, 100\) .*expected N×3072"):
        load_split("cifar10", folder, "val")


def test_limit_per_class_keeps_the_first_images_of_each_class_in_file_order(tmp_path):
    write_cifar10(tmp_path, n_per_class=5, num_classes=3)
    full = load_split("cifar10", tmp_path, "train")
    limited = load_split("cifar10", tmp_path, "train", limit_per_class=2)
    assert limited.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert torch.equal(limited.images, full.images[:6])
    with pytest.raises(ValueError, match="limit_per_class must be positive"):
        load_split("cifar10", tmp_path, "train", limit_per_class=0)


# --- IDX ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reads_images_and_labels_gzipped_or_not(tmp_path, gz):
    write_idx(tmp_path, n_per_class=2, n_test_per_class=1, gz=gz)
    pixels = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    suffix = ".gz" if gz else ""
    write_idx_file(tmp_path / f"t10k-images-idx3-ubyte{suffix}", pixels, gz=gz)
    write_idx_file(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", np.array([3, 1, 9]), gz=gz)
    train, val = load_split("fashion_mnist", tmp_path, "train"), load_split("mnist", tmp_path, "test")
    assert len(train) == 20 and train.images.shape == (20, 1, 28, 28)
    assert train.labels.tolist() == list(range(10)) * 2 and train.classes[9] == "Ankle boot"
    assert val.labels.tolist() == [3, 1, 9] and val.classes[3] == "3"
    assert torch.equal(val.images[:, 0], torch.from_numpy(pixels.astype(np.uint8)))


def test_idx_rejects_bad_magic_and_mismatched_counts(tmp_path):
    write_idx(tmp_path)
    write_idx_file(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28)), magic=2049)
    with pytest.raises(ValueError, match=r"fashion_mnist: .*train-images-idx3-ubyte.gz has IDX magic 2049, "
                                         r"expected 2051 \(images\)"):
        load_split("fashion_mnist", tmp_path, "train")
    write_idx_file(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match=r"holds 2 images but .*train-labels-idx1-ubyte.gz 30 labels"):
        load_split("fashion_mnist", tmp_path, "train")


def test_idx_rejects_a_truncated_file(tmp_path):
    write_idx(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"declares 20x28x28 values but holds 15670; .*truncated"):
        load_split("mnist", tmp_path, "val")


@pytest.mark.skipif(not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason="real Fashion-MNIST absent: install Debian's dataset-fashion-mnist")
def test_real_fashion_mnist_counts_and_labels():
    train, val = load_split("fashion_mnist", None, "train"), load_split("fashion_mnist", None, "test")
    info = dataset_info("fashion_mnist")
    assert len(train) == info.expected_counts["train"] == 60_000
    assert len(val) == info.expected_counts["val"] == 10_000
    assert train.images.shape == (60_000, 1, 28, 28) and train.root == FASHION_MNIST
    for ds in (train, val):
        assert torch.bincount(ds.labels).tolist() == [len(ds) // 10] * 10


# --- Tiny-ImageNet ------------------------------------------------------------------------------------------


def test_tiny_imagenet_sorted_wnids_annotations_and_grey_images(tmp_path):
    write_tiny_imagenet(tmp_path, wnids=("n03000000", "n01000000", "n02000000"), n_train_per_class=3,
                        n_val_per_class=2, size=16)
    train = load_split("tiny_imagenet", tmp_path, "train")
    assert isinstance(train, FileDataset) and len(train) == 9
    assert train.classes == ["n01000000", "n02000000", "n03000000"]
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    val = load_split("tiny_imagenet", tmp_path / "tiny-imagenet-200", "val")
    # val_annotations.txt lists the wnids in wnids.txt order: n03, n01, n02, n03, ...
    assert val.labels.tolist() == [2, 0, 1, 2, 0, 1]
    grey, _ = train[0]  # the fixture's greyscale JPEG comes out as 3 equal channels
    assert grey.shape == (3, 64, 64) and torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert_class_colours(train)
    assert_class_colours(val)
    assert load_split("tiny_imagenet", tmp_path, "train", limit_per_class=1).labels.tolist() == [0, 1, 2]


def test_tiny_imagenet_rejects_an_unknown_wnid_in_val_annotations(tmp_path):
    folder = write_tiny_imagenet(tmp_path)
    with open(folder / "val" / "val_annotations.txt", "a") as f:
        f.write("val_99.JPEG\tn09999999\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt:7: expected 'file<TAB>wnid...' with a wnid "
                                         r"from wnids.txt"):
        load_split("tiny_imagenet", tmp_path, "val")


# --- ImageFolder (ImageNet) ---------------------------------------------------------------------------------


def test_imagefolder_sorted_classes_extensions_and_grey(tmp_path):
    write_imagefolder(tmp_path, classes=("n02000000", "n01000000", "n03000000"), n_train_per_class=3,
                      n_val_per_class=2)
    (tmp_path / "train" / "n01000000" / "notes.txt").write_text("not an image")
    train = load_split("imagenet", tmp_path, "train", image_size=24)
    val = load_split("imagenet", tmp_path, "val", image_size=24)
    assert train.classes == ["n01000000", "n02000000", "n03000000"]
    assert len(train) == 9 and len(val) == 6
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert sum(p.endswith(b".png") for p in train.relpaths) == 3
    assert train[0][0].shape == (3, 24, 24)
    assert_class_colours(train)
    assert_class_colours(val)
    Path(val.path(0)).write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match=rf"^imagenet: cannot read {val.path(0)} \(.*\); fix: re-extract"):
        val[0]


def test_imagefolder_split_synonyms_and_flat_val_with_kaggle_labels(tmp_path):
    write_imagefolder(tmp_path, train_dir="training", val_dir="validation", flat_val=True)
    val = load_split("imagenet", tmp_path, "val", image_size=24)
    assert len(val) == 6 and val.labels.tolist() == [1, 0, 2, 1, 0, 2]  # classes written n02, n01, n03
    assert_class_colours(val)
    assert len(load_split("imagenet", tmp_path, "train", image_size=24)) == 9


def test_imagefolder_rejects_a_val_class_missing_from_train(tmp_path):
    write_imagefolder(tmp_path)
    shutil.copytree(tmp_path / "val" / "n01000000", tmp_path / "val" / "n09999999")
    with pytest.raises(ValueError, match=r"imagenet: .*n09999999 is not a class of .*train; fix: "):
        load_split("imagenet", tmp_path, "val")


# --- iNaturalist 2018, Places205, CUB -----------------------------------------------------------------------


def test_inat2018_labels_are_category_ids_and_json_decides_the_split(tmp_path):
    write_inat2018(tmp_path, num_classes=3, n_train_per_class=3, n_val_per_class=2)
    train = load_split("inat2018", tmp_path, "train", image_size=24)
    val = load_split("inat2018", tmp_path, "val", image_size=24)
    assert len(train) == 9 and len(val) == 6
    assert train.classes == ["Species 0", "Species 1", "Species 2"]
    assert train.labels.tolist() == [2, 1, 0] * 3  # images-list order, category ids as labels
    assert all(p.startswith(b"train_val2018/") for p in train.relpaths)
    assert not set(train.relpaths) & set(val.relpaths)
    assert_class_colours(train)
    assert_class_colours(val)


def test_places205_lists_and_both_root_forms(tmp_path):
    write_places205(tmp_path / "places", categories=("a/abbey", "b/bedroom", "f/field/cultivated"))
    train = load_split("places205", tmp_path / "places", "train", image_size=24)
    assert train.classes == ["abbey", "bedroom", "field/cultivated"]
    assert len(train) == 9 and train.labels.tolist() == [0, 1, 2] * 3
    assert_class_colours(train)
    # The lists and the images256 folder side by side in one folder.
    flat = tmp_path / "flat"
    shutil.copytree(tmp_path / "places" / "trainvalsplit_places205", flat)
    shutil.copytree(tmp_path / "places" / "data/vision/torralba/deeplearning/images256", flat / "images256")
    val = load_split("places205", flat, "val", image_size=24)
    assert len(val) == 6 and val.image_dir == flat / "images256"
    assert_class_colours(val)
    (flat / "images256" / "a" / "abbey" / "00000010.jpg").unlink()  # the first val image
    first_missing = r"places205: no a/abbey/00000010.jpg \(the first listed image\) under "
    with pytest.raises(FileNotFoundError, match=first_missing):
        load_split("places205", flat, "val")


def test_cub_official_split_and_one_based_classes(tmp_path):
    write_cub(tmp_path, num_classes=3, n_train_per_class=2, n_test_per_class=3)
    train = load_split("cub200", tmp_path, "train", image_size=24)
    test = load_split("cub200", tmp_path / "CUB_200_2011", "test", image_size=24)
    assert len(train) == 6 and len(test) == 9 and test.split == "val"
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2] and train.classes[0] == "001.Bird_1"
    assert_class_colours(train)
    assert_class_colours(test)


def test_aircraft_trainval_test_lists_and_levels(tmp_path):
    from mixbench.data.aircraft import write_aircraft

    write_aircraft(tmp_path, num_classes=4, n_trainval_per_class=3, n_test_per_class=2)
    train = load_split("aircraft", tmp_path, "train", image_size=24)
    test = load_split("aircraft", tmp_path / "fgvc-aircraft-2013b", "test", image_size=24)
    assert (len(train), len(test), test.split) == (12, 8, "val")
    # Class index = position in variants.txt (not sorted); names keep their spaces.
    assert train.classes == ["Boeing 707-320", "A300B4", "Cessna 525", "DC-3"]
    assert train.labels.tolist() == [0, 1, 2, 3] * 3
    assert_class_colours(train)
    assert_class_colours(test)
    family = load_split("aircraft", tmp_path, "train", options={"level": "family"})
    assert family.info.num_classes == 70 and family.classes[2] == "Family Cessna"
    assert dataset_info("aircraft").num_classes == 100
    listed = tmp_path / "fgvc-aircraft-2013b" / "data" / "images_variant_test.txt"
    listed.write_text(listed.read_text() + "1234567 Concorde\n")
    with pytest.raises(ValueError, match=r"aircraft: .*images_variant_test.txt:9: expected '<image id> <variant of "
                                         r"variants.txt>', got '1234567 Concorde'; fix: re-extract"):
        load_split("aircraft", tmp_path, "test")
    with pytest.raises(FileNotFoundError, match=r"aircraft: no fgvc-aircraft-2013b/data/images under .*; extract "
                                                r"fgvc-aircraft-2013b.tar.gz there"):
        load_split("aircraft", tmp_path / "nothing", "train")


def test_inat2017_json_and_its_own_image_folder(tmp_path):
    from mixbench.data.inaturalist import write_inat

    write_inat(tmp_path, "2017", num_classes=3, n_train_per_class=2, n_val_per_class=2)
    train = load_split("inat2017", tmp_path, "train", image_size=24)
    val = load_split("inat2017", tmp_path, "val", image_size=24)
    assert (len(train), len(val), train.classes) == (6, 6, ["Species 0", "Species 1", "Species 2"])
    assert train.labels.tolist() == [2, 1, 0, 2, 1, 0]  # the file's image order, label = category_id
    assert all(p.startswith(b"train_val_images/") for p in train.relpaths.tolist())
    assert_class_colours(train)
    assert_class_colours(val)
    with pytest.raises(FileNotFoundError, match=r"inat2017: no val2017.json under .*; extract train_val_images.tar.gz "
                                                r"and train_val2017.zip there"):
        load_split("inat2017", tmp_path / "train_val_images", "val")


# --- synthetic ----------------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_per_seed_and_split():
    a, b = load_split("synthetic", None, "train", seed=3), load_split("synthetic", None, "train", seed=3)
    assert len(a) == 2000 and a.images.shape == (2000, 3, 32, 32) and a.root is None
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, load_split("synthetic", None, "train", seed=4).images)
    val = load_split("synthetic", None, "val", seed=3)
    assert len(val) == 500 and not torch.equal(val.images[:10], a.images[:10])
    limited = load_split("synthetic", None, "train", seed=3, limit_per_class=5)
    assert len(limited) == 50 and torch.equal(limited.images, a.images[:50])


def test_synthetic_is_learnable_by_nearest_class_mean():
    train, val = load_split("synthetic", None, "train"), load_split("synthetic", None, "val")
    x_train, x_val = train.images.flatten(1).float() / 255, val.images.flatten(1).float() / 255
    means = torch.stack([x_train[train.labels == k].mean(0) for k in range(10)])
    accuracy = (torch.cdist(x_val, means).argmin(1) == val.labels).float().mean().item()
    assert accuracy > 2 * 0.1, accuracy


# --- batches ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_train():
    return load_split("synthetic", None, "train", limit_per_class=10)  # 100 images


def labels_of(batch_iter) -> list[list[int]]:
    return [labels.tolist() for _, labels in batch_iter]


def test_train_batches_depend_only_on_seed_and_epoch(synthetic_train):
    ds = synthetic_train
    first = list(batches(ds, 16, train=True, seed=1, epoch=2))
    again = list(batches(ds, 16, train=True, seed=1, epoch=2))
    assert len(first) == num_batches(ds, 16, train=True) == 6  # 100 // 16, last partial batch dropped
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    other_epoch = list(batches(ds, 16, train=True, seed=1, epoch=3))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, other_epoch, strict=True))
    images, labels = first[0]
    assert images.dtype == torch.uint8 and images.shape == (16, 3, 32, 32) and labels.dtype == torch.int64
    # Each batch row is the dataset's image with that label: slices, not copies of the wrong rows.
    index = [i for i in range(len(ds)) if torch.equal(ds.images[i], images[0])]
    assert index and int(ds.labels[index[0]]) == int(labels[0])


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_are_disjoint_and_cover_the_set(world_size):
    ds = load_split("synthetic", None, "val", limit_per_class=10)  # 100 images, labels 0..9 repeating
    ds.labels = ds.targets = torch.arange(100)  # labels as ids, to see which images each rank got
    # Eval: file order, no padding: every image exactly once over all ranks.
    seen = [sum(labels_of(batches(ds, 7, train=False, seed=0, epoch=0, rank=r, world_size=world_size)), [])
            for r in range(world_size)]
    assert sorted(sum(seen, [])) == list(range(100))
    assert seen[0] == list(range(0, 100, world_size))
    assert len(labels_of(batches(ds, 7, train=False, seed=0, epoch=0, world_size=world_size))) == num_batches(
        ds, 7, train=False, world_size=world_size)
    # Train: padded to a multiple of world_size, so shards are equal; disjoint apart from the padding.
    per_rank = [sum(labels_of(batches(ds, 1, train=True, seed=5, epoch=1, rank=r, world_size=world_size)), [])
                for r in range(world_size)]
    assert all(len(s) == -(-100 // world_size) for s in per_rank)
    everything = sum(per_rank, [])
    assert sorted(set(everything)) == list(range(100))
    assert len(everything) - len(set(everything)) == (-100) % world_size
    for a, b in itertools.combinations(per_rank, 2):
        assert len(set(a) & set(b)) <= (-100) % world_size


def test_too_small_a_training_set_is_a_clear_error(synthetic_train):
    with pytest.raises(ValueError, match=r"synthetic train: 100 images per process are fewer than batch_size "
                                         r"128, .*fix: lower batch_size or raise limit_per_class"):
        batches(synthetic_train, 128, train=True, seed=0, epoch=0)
    assert len(list(batches(synthetic_train, 128, train=False, seed=0, epoch=0))) == 1  # eval keeps it


def test_file_batches_are_identical_with_or_without_workers(tmp_path):
    write_tiny_imagenet(tmp_path, n_train_per_class=4, size=20)
    ds = load_split("tiny_imagenet", tmp_path, "train", image_size=16)
    serial = list(batches(ds, 4, train=True, seed=0, epoch=0))
    parallel = list(batches(ds, 4, train=True, seed=0, epoch=0, num_workers=2))
    assert len(serial) == 3 and serial[0][0].shape == (4, 3, 16, 16)
    for (xa, ya), (xb, yb) in zip(serial, parallel, strict=True):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    # The persistent workers serve the next epoch too, with other crops.
    next_epoch = list(batches(ds, 4, train=True, seed=0, epoch=1, num_workers=2))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(serial, next_epoch, strict=True))
    assert len(ds._loaders) == 2
    # Eval batches are the deterministic eval view in file order, last batch kept.
    val = list(batches(ds, 5, train=False, seed=0, epoch=0))
    assert [len(y) for _, y in val] == [5, 5, 2] and torch.equal(val[0][0][0], ds[0][0])


def test_random_resized_crop_box_stays_inside_and_respects_scale():
    rng = random.Random(0)
    for _ in range(200):
        left, top, right, bottom = random_resized_crop_box(500, 375, rng)
        assert 0 <= left < right <= 500 and 0 <= top < bottom <= 375
        assert 0.07 * 500 * 375 <= (right - left) * (bottom - top) <= 500 * 375


# --- DeviceAugment ------------------------------------------------------------------------------------------


def test_eval_augment_only_normalises():
    info = dataset_info("cifar10")
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    out = device_augment(info, train=False)(x)
    mean, std = torch.tensor(info.mean).view(1, 3, 1, 1), torch.tensor(info.std).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and out.shape == (4, 3, 32, 32)
    assert torch.equal(out, (x.float() / 255 - mean) / std)


def test_grey_images_stay_one_channel_and_file_datasets_are_only_normalised():
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    out = device_augment(dataset_info("fashion_mnist"), train=False)(x)
    assert out.shape == (2, 1, 28, 28)
    torch.testing.assert_close(out, (x.float() / 255 - 0.2860) / 0.3530, rtol=0, atol=1e-6)
    tiny = device_augment(dataset_info("tiny_imagenet"), train=True)
    y = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    tiny_eval = device_augment(dataset_info("tiny_imagenet"), train=False)
    torch.testing.assert_close(tiny(y, torch.Generator()), tiny_eval(y))


def test_train_augment_is_a_seeded_padded_crop_and_flip():
    augment = DeviceAugment((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), image_size=8, crop=True, hflip=True)
    x = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)  # no zeros: padding is recognisable
    out = augment(x, torch.Generator().manual_seed(7))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(out, augment(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(out, augment(x, torch.Generator().manual_seed(8)))
    # Every output is one of the 9×9×2 crops/flips of its zero-padded input; both flips and shifts occur.
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4)).float() / 255  # what the augment's maths gives

    def candidate(n: int, dy: int, dx: int, flipped: bool) -> torch.Tensor:
        crop = padded[n, :, dy:dy + 8, dx:dx + 8]
        return crop.flip(-1) if flipped else crop

    found = set()
    for n in range(len(x)):
        matches = [(dy, dx, f) for dy, dx, f in itertools.product(range(9), range(9), (False, True))
                   if torch.equal(out[n], candidate(n, dy, dx, f))]
        assert matches, n
        found.update(matches)
    assert {f for _, _, f in found} == {False, True} and len({(dy, dx) for dy, dx, _ in found}) > 10


def test_mnist_is_cropped_but_not_flipped():
    assert device_augment(dataset_info("mnist"), train=True).hflip is False
    assert device_augment(dataset_info("fashion_mnist"), train=True).hflip is True
    assert device_augment(dataset_info("fashion_mnist"), train=False).crop is False


def test_train_augment_resizes_in_memory_images_to_image_size():
    augment = device_augment(dataset_info("cifar10"), train=True, image_size=48)
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert augment(x, torch.Generator()).shape == (3, 3, 48, 48)
    with pytest.raises(ValueError, match="pass a CPU torch.Generator"):
        augment(x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_augment_matches_between_cpu_and_cuda():
    augment = device_augment(dataset_info("cifar10"), train=True)
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    on_cpu = augment(x, torch.Generator().manual_seed(0))
    on_gpu = augment(x.cuda(), torch.Generator().manual_seed(0))
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu)


def test_non_ascii_paths_round_trip(tmp_path):
    write_imagefolder(tmp_path, classes=("n01000000", "grüße"), n_train_per_class=2, n_val_per_class=1)
    ds = load_split("imagenet", tmp_path, "train", image_size=16)
    assert ds.classes == ["grüße", "n01000000"] and "grüße" in ds.path(0)
    assert ds[0][0].shape == (3, 16, 16)
