"""The user's own data: an ImageFolder tree of their own, and a dataset plug-in registered through an entry point,
each run as a suite end to end, counted by `mixbench check` and reported; every bad tree is one line naming the
path and the fix.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixbench.cli import main
from mixbench.data import dataset_info, load_split
from mixbench.data.fixtures import class_colour, write_jpeg
from mixbench.data.folder import scan, write_user_tree
from mixbench.data.registry import DATASETS, OptionError, _resolved
from mixbench.report import load_results
from mixbench.suite import SuiteError, expand, load_suite


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    _resolved.cache_clear()  # trees are edited in place below; the listing caches are per process
    scan.cache_clear()
    yield
    _resolved.cache_clear()
    scan.cache_clear()


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def suite_text(datasets: str, *, methods: str = "[vanilla, mixup]", batch: int = 4) -> str:
    return textwrap.dedent(f"""\
        name: own
        datasets: {datasets}
        backbones: [resnet_tiny_cifar]
        methods: {methods}
        seeds: [0]
        recipe: {{epochs: 1, batch_size: {batch}, num_workers: 0, last_n: 1, image_size: 32}}
        """)


def write_suite(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


# ---- reading a tree ---------------------------------------------------------------------------------------------


def test_classes_are_sorted_folders_and_the_split_is_stratified_seeded_and_recorded(tmp_path):
    root = write_user_tree(tmp_path / "flowers", {"tulip": 10, "daisy": 3, "rose": 6})
    train, val = load_split("imagefolder", root, "train"), load_split("imagefolder", root, "val")
    assert train.classes == val.classes == ["daisy", "rose", "tulip"]
    # round(0.1 × n), at least one, per class
    assert torch.bincount(val.targets).tolist() == [1, 1, 1]
    assert torch.bincount(train.targets).tolist() == [2, 5, 9]
    files = {p for p in np.char.decode(train.relpaths).tolist()} | {p for p in np.char.decode(val.relpaths).tolist()}
    assert len(files) == 19 and not set(np.char.decode(train.relpaths).tolist()) & set(
        np.char.decode(val.relpaths).tolist())
    again = load_split("imagefolder", root, "val")
    assert again.relpaths.tolist() == val.relpaths.tolist()  # seeded: every trial sees the same split
    other = load_split("imagefolder", root, "val", options={"val_fraction": 0.5, "split_seed": 3})
    assert torch.bincount(other.targets).tolist() == [2, 3, 5]
    # Labels are the sorted class positions: each RGB image's mean colour is its class's.
    for i in range(len(train)):
        path = train.path(i)
        with Image.open(path) as img:
            if img.mode == "RGB" and not path.endswith(".png"):
                mean = np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(0)
                assert np.abs(mean - class_colour(int(train.targets[i]))).max() < 12, path


def test_grey_rgba_and_palette_images_become_rgb_or_grey_with_in_chans_1(tmp_path):
    root = write_user_tree(tmp_path / "t", {"a": 5, "b": 4})
    train = load_split("imagefolder", root, "train", image_size=16)
    modes = set()
    for i in range(len(train)):
        with Image.open(train.path(i)) as img:
            modes.add(img.mode)
        image, _ = train[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 16, 16)
    assert {"RGB", "L", "RGBA", "P"} <= modes
    grey = load_split("imagefolder", root, "train", options={"in_chans": 1}, image_size=16)
    assert grey[0][0].shape == (1, 16, 16) and grey[(1, 7)][0].shape == (1, 16, 16)
    info = dataset_info("imagefolder", {"in_chans": 1}, root)
    assert (info.in_chans, info.mean, info.std) == (1, (0.449,), (0.226,))


def test_image_size_and_family_are_inferred_and_overridable(tmp_path):
    small = write_user_tree(tmp_path / "small", {"a": 2, "b": 2}, size=(20, 15))
    big = write_user_tree(tmp_path / "big", {"a": 2, "b": 2}, size=(60, 50))
    assert (dataset_info("imagefolder", None, small).image_size, dataset_info("imagefolder", None, small).family) == (
        20, "cifar")
    assert (dataset_info("imagefolder", None, big).image_size, dataset_info("imagefolder", None, big).family) == (
        60, "tiny")
    info = dataset_info("imagefolder", {"image_size": 96}, small)
    assert (info.image_size, info.family, info.pil_preset) == (96, "imagenet", "imagenet")
    assert dataset_info("imagefolder", {"family": "imagenet"}, small).family == "imagenet"
    assert dataset_info("imagefolder", None, small).mean == (0.485, 0.456, 0.406)  # ImageNet's by default


def test_auto_mean_std_is_every_train_pixel_computed_once_and_cached_by_the_trees_fingerprint(tmp_path):
    root = write_user_tree(tmp_path / "t", {"a": 3, "b": 5})
    info = dataset_info("imagefolder", {"mean": "auto", "std": "auto"}, root)
    train = load_split("imagefolder", root, "train")
    pixels = []
    for i in range(len(train)):
        with Image.open(train.path(i)) as img:
            pixels.append(np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255)
    pixels = np.concatenate(pixels)
    assert np.allclose(info.mean, pixels.mean(0), atol=1e-5) and np.allclose(info.std, pixels.std(0), atol=1e-5)
    (cached,) = (tmp_path / "cache" / "stats").glob("*.json")
    cached.write_text('{"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}')
    _resolved.cache_clear()
    assert dataset_info("imagefolder", {"mean": "auto", "std": "auto"}, root).mean == (0.1, 0.2, 0.3)
    write_jpeg(root / "train" / "a" / "new.jpg", 0, (20, 15))  # new data: a new fingerprint, computed again
    _resolved.cache_clear()
    scan.cache_clear()
    assert dataset_info("imagefolder", {"mean": "auto", "std": "auto"}, root).mean != (0.1, 0.2, 0.3)


def test_the_trial_id_holds_label_and_classes_never_the_path(tmp_path):
    root = write_user_tree(tmp_path / "a" / "flowers", {"tulip": 3, "daisy": 3})
    copy = tmp_path / "b" / "elsewhere"
    shutil.copytree(root, copy)
    path = write_suite(tmp_path, suite_text(f"[{{name: imagefolder, root: {root}, label: flowers}}]"))

    def ids(data_root: Path, label: str = "flowers") -> list[str]:
        suite = load_suite(path, [f"datasets=[{{name: imagefolder, root: '{data_root}', label: {label}}}]"])
        return [t.trial_id for t in expand(suite, path)]

    trial = expand(load_suite(path), path)[0]
    assert trial.dataset.classes == ["daisy", "tulip"] and trial.dataset.val_fraction == 0.1
    assert trial.dirname.startswith("flowers-resnet_tiny_cifar-vanilla-s0-")
    assert ids(root) == ids(copy)
    assert ids(root) != ids(root, "roses")
    (copy / "train" / "tulip").rename(copy / "train" / "tulips")
    _resolved.cache_clear()
    scan.cache_clear()
    assert ids(copy) != ids(root)


# ---- bad trees: one line naming the path and the fix -----------------------------------------------------------


def _bad_tree(tmp_path: Path, case: str) -> Path:
    root = write_user_tree(tmp_path / "t", {"a": 3, "b": 3}, {"a": 1, "b": 1})
    if case == "empty class":
        (root / "train" / "c").mkdir()
    elif case == "val class not in train":
        write_jpeg(root / "val" / "z" / "z.jpg", 0)
    elif case == "train class not in val":
        shutil.rmtree(root / "val" / "b")
    elif case == "no images":
        shutil.rmtree(root / "train")
        shutil.rmtree(root / "val")
        (root / "train").mkdir()
    elif case == "non-image file":
        (root / "train" / "a" / "labels.csv").write_text("x\n")
    elif case == "symlink loop":
        os.symlink(root / "train" / "a", root / "train" / "a" / "loop")
    return root


@pytest.mark.parametrize(("case", "message"), [
    ("empty class", r"imagefolder: class folder .*/t/train/c holds no images; fix: add images or remove the folder"),
    ("val class not in train", r"imagefolder: .*/t/val/z is a class missing from .*/t/train; fix: add .*/t/train/z/"),
    ("train class not in val", r"imagefolder: class b of .*/t/train has no folder in .*/t/val; fix: add .*/t/val/b/"),
    ("no images", r"imagefolder: no class folders under .*/t/train; fix: lay images out as .*/train/<class>/<image>"),
    ("non-image file", r"imagefolder: .*/t/train/a/labels.csv is not an image file .*; fix: move it out of the class"),
    ("symlink loop", r"imagefolder: .*/t/train/a/loop is a symlink loop .*; fix: remove the link"),
])
def test_a_bad_tree_is_one_line_naming_the_path_and_the_fix(tmp_path, case, message):
    root = _bad_tree(tmp_path, case)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        load_split("imagefolder", root, "train")
    assert "\n" not in str(err.value)
    # The same line, with the suite's file and field, before anything runs.
    path = write_suite(tmp_path, suite_text(f"[{{name: imagefolder, root: {root}, label: mine}}]"))
    with pytest.raises(SuiteError, match=r"suite.yaml: datasets\[0\]\.root: " + message):
        expand(load_suite(path), path)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_val_fraction_outside_0_1_names_the_field(tmp_path, fraction):
    root = write_user_tree(tmp_path / "t", {"a": 3, "b": 3})
    path = write_suite(tmp_path, suite_text(f"[{{name: imagefolder, root: {root}, val_fraction: {fraction}}}]"))
    with pytest.raises(SuiteError, match=rf"suite.yaml: datasets\[0\]\.val_fraction: imagefolder: val_fraction must "
                                         rf"be in \(0, 1\), got {fraction}; fix: e.g. 0.1"):
        expand(load_suite(path), path)


def test_option_errors_name_the_field(tmp_path):
    root = write_user_tree(tmp_path / "t", {"a": 3, "b": 3}, {"a": 1, "b": 1})
    for options, message in [
        ({"val_fraction": 0.2}, r"val_fraction: imagefolder: .*/t has a val/ folder, so nothing is split off train; "
                                r"fix: remove val_fraction"),
        ({"in_chans": 2}, r"in_chans: imagefolder: in_chans must be 1 \(grey\) or 3 \(RGB\), got 2"),
        ({"mean": "auto"}, r"std: imagefolder: mean and std are computed together; fix: set both to auto"),
        ({"mean": [0.5, 0.5]}, r"mean: imagefolder: mean must be 'auto' or 3 number\(s\)"),
        ({"famly": "cifar"}, r"famly: unknown key for dataset imagefolder; fix: remove it \(imagefolder takes"),
    ]:
        with pytest.raises(OptionError, match=message.split(": ", 1)[1]) as err:
            dataset_info("imagefolder", options, root)
        assert err.value.key == message.split(":")[0]
    with pytest.raises(OptionError, match=r"unknown key for dataset cifar10; fix: remove it"):
        dataset_info("cifar10", {"level": "x"})


def test_check_fails_on_corrupt_and_truncated_images_naming_each(tmp_path, capsys):
    root = write_user_tree(tmp_path / "t", {"a": 3, "b": 3})
    (root / "train" / "a" / "a_0.jpg").write_bytes(b"not an image at all")
    truncated = root / "train" / "b" / "b_0.jpg"
    truncated.write_bytes(truncated.read_bytes()[:-200])
    path = write_suite(tmp_path, suite_text(f"[{{name: imagefolder, root: {root}, label: mine}}]"))
    code, out = cli(capsys, "check", str(path))
    assert code != 0
    assert (f"suite.yaml: datasets[0].root: imagefolder: {root}/train/a/a_0.jpg is not a readable image "
            f"(UnidentifiedImageError") in out
    assert f"imagefolder: {truncated} is a truncated JPEG (no end marker); fix: re-encode or delete the file" in out


# ---- end to end: a user's tree, and a plug-in ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_users_tree_runs_end_to_end_is_counted_by_check_and_reported(tmp_path, capsys):
    root = write_user_tree(tmp_path / "flowers", {"tulip": 6, "daisy": 3, "rose": 5})  # PNG, JPEG, 4 modes, uneven
    path = write_suite(tmp_path, suite_text(f"[{{name: imagefolder, root: {root}, label: flowers}}]"))
    code, out = cli(capsys, "check", str(path))
    assert code == 0, out
    assert "ok: imagefolder train: 11 images in 3 classes" in out
    assert "ok: imagefolder val: 3 images in 3 classes" in out
    code, out = cli(capsys, "run", str(path), "--no-live", "--results", str(tmp_path / "r"))
    assert code == 0, out
    records = [t.record for t in load_results(tmp_path / "r" / "own")]
    assert {(r.dataset, r.method, r.status) for r in records} == {("flowers", "vanilla", "done"),
                                                                   ("flowers", "mixup", "done")}
    assert all(r.config["dataset"]["classes"] == ["daisy", "rose", "tulip"] for r in records)
    code, out = cli(capsys, "report", str(tmp_path / "r" / "own"))
    assert code == 0, out
    assert "flowers" in out and (tmp_path / "r" / "own" / "report" / "results.csv").is_file()
    assert "flowers" in (tmp_path / "r" / "own" / "report" / "results.csv").read_text()


PLUGIN = '''
"""A lab's dataset, outside mixbench: coloured squares, one colour per class, read from nothing."""

import torch

from mixbench.data import InMemoryDataset
from mixbench.data.registry import DatasetInfo, DatasetSpec


def read(info, root, split, *, image_size, limit_per_class, seed):
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.arange(info.num_classes).repeat(8 if split == "train" else 2)
    images = (labels.view(-1, 1, 1, 1) * 80 + torch.randint(0, 30, (labels.numel(), 3, 16, 16), generator=gen))
    return InMemoryDataset(info, root, split, ["red", "green", "blue"], images.to(torch.uint8), labels, image_size,
                           limit_per_class)


SPEC = DatasetSpec(DatasetInfo(name="labsquares", family="cifar", num_classes=3, image_size=16, in_chans=3,
                               mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), in_memory=True, default_root=None,
                               expected_counts={"train": 24, "val": 6}), read, needs_root=False)
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package `labdata` installed in a folder on sys.path, with its dist-info declaring the entry point."""
    site = tmp_path / "site"
    (site / "labdata").mkdir(parents=True)
    (site / "labdata" / "__init__.py").write_text(PLUGIN)
    dist = site / "labdata-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: labdata\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mixbench.datasets]\nlabsquares = labdata:SPEC\n")
    monkeypatch.syspath_prepend(str(site))
    # Trials run in their own processes: they find the package (and its metadata) the same way.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *sys.path]))
    DATASETS.reload()
    yield site
    DATASETS.entries.pop("labsquares", None)
    DATASETS._loaded = False


@pytest.mark.slow
def test_a_plugin_dataset_from_an_entry_point_runs_in_a_suite(tmp_path, capsys, installed_plugin):
    from mixbench.data import list_datasets

    assert "labsquares" in list_datasets()
    path = write_suite(tmp_path, suite_text("[labsquares]", methods="[vanilla, cutmix]"))
    code, out = cli(capsys, "run", str(path), "--no-live", "--results", str(tmp_path / "r"))
    assert code == 0, out
    records = [t.record for t in load_results(tmp_path / "r" / "own")]
    assert {(r.dataset, r.method, r.status) for r in records} == {("labsquares", "vanilla", "done"),
                                                                   ("labsquares", "cutmix", "done")}
    # The same spec named directly as module:attr in a suite, without the entry point.
    direct = write_suite(tmp_path, suite_text("['labdata:SPEC']"))
    (trial, _) = expand(load_suite(direct), direct)
    assert trial.dataset.key == "labsquares" and trial.dirname.startswith("labsquares-")


def test_the_readmes_own_data_suite_expands_on_a_users_tree(tmp_path):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("```yaml\n# flowers.yaml\n", 1)[1].split("```", 1)[0]
    root = write_user_tree(tmp_path / "flowers", {"tulip": 10, "daisy": 10, "rose": 10})
    path = write_suite(tmp_path, block.replace("/data/flowers", str(root)))
    trials = expand(load_suite(path), path)
    assert len(trials) == 2 * 6 * 3
    ds = trials[0].dataset
    assert (ds.key, ds.classes, ds.val_fraction, ds.split_seed) == ("flowers", ["daisy", "rose", "tulip"], 0.1, 0)
    info = ds.info()
    assert info.mean != (0.485, 0.456, 0.406) and len(info.std) == 3
    assert {t.dirname.split("-")[0] for t in trials} == {"flowers"}


def test_check_and_fixtures_do_not_import_each_other():
    import subprocess

    code = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.startswith('mixbench.')))")
    for module, other in (("mixbench.check", "mixbench.data.fixtures"), ("mixbench.data.fixtures", "mixbench.check")):
        out = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, check=True).stdout
        assert other not in out and "mixbench.tiny" not in out, (module, out)
