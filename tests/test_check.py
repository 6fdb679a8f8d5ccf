"""The pre-flight check (`mixbench check`, the start of `mixbench run`) and the dry-run cost estimate.

Each problem is pinned to its message: missing root, missing class folder, wrong count (an error, or a warning
where the suite limits the split), bad backbone or method, a method constraint violated at the suite's image
size, a batch that does not divide over the GPUs; and the cost model's numbers and its use of measured records.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from mixbench.check import Expected, check_suite, inspect_dataset
from mixbench.cli import main
from mixbench.data.fixtures import write_imagefolder, write_tiny_imagenet
from mixbench.suite import SuiteError, expand, load_suite

WNIDS = ("n02000000", "n01000000", "n03000000")  # sorted: n01000000 -> 0, n02000000 -> 1, n03000000 -> 2


def write_suite(tmp_path: Path, body: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def imagenet_suite(tmp_path: Path, root: Path | str, extra: str = "", methods: str = "[vanilla]",
                   image_size: int = 32, backbone: str = "resnet18") -> Path:
    return write_suite(tmp_path, f"""
        name: chk
        datasets:
          - {{name: imagenet, root: {root}{extra}}}
        backbones: [{backbone}]
        methods: {methods}
        recipe: {{epochs: 1, batch_size: 2, image_size: {image_size}}}
    """)


def run_check(path: Path, expected: dict | None = None):
    suite = load_suite(path)
    return check_suite(suite, expand(suite, path), path, expected=expected)


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def imagenet_root(tmp_path: Path) -> Path:
    return write_imagefolder(tmp_path / "imagenet", WNIDS, n_train_per_class=3, n_val_per_class=2)


# ---- data roots ----------------------------------------------------------------------------------------------


def test_missing_root_names_the_path_and_the_fix(tmp_path, capsys):
    suite = imagenet_suite(tmp_path, tmp_path / "nowhere")
    code, out = cli(capsys, "check", str(suite))
    assert code == 2
    assert (f"{suite}: datasets[0].root: {tmp_path / 'nowhere'} does not exist; fix: point root: (or --data-root "
            f"imagenet=PATH, or MIXBENCH_DATA_IMAGENET) at the imagenet files") in out


def test_no_root_at_all_says_how_to_give_one(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MIXBENCH_DATA_IMAGENET", raising=False)
    suite = write_suite(tmp_path, """
        name: chk
        datasets: [imagenet]
        backbones: [resnet18]
        methods: [vanilla]
        recipe: {epochs: 1, batch_size: 2}
    """)
    code, out = cli(capsys, "check", str(suite))
    assert code == 2
    assert (f"{suite}: datasets[0].root: imagenet needs a data root; set root:, --data-root imagenet=PATH or "
            f"MIXBENCH_DATA_IMAGENET") in out


def test_root_without_the_layout_is_one_line_naming_where_it_looked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    report = run_check(imagenet_suite(tmp_path, empty))
    assert not report.ok
    assert report.errors[0].endswith(f"datasets[0].root: imagenet: no train folder (train or training) under {empty}; "
                                     f"pass --data-root imagenet=PATH, the folder holding train/ and val/")


def test_missing_val_class_folder_is_named(tmp_path, imagenet_root):
    shutil.rmtree(imagenet_root / "val" / "n01000000")
    report = run_check(imagenet_suite(tmp_path, imagenet_root), {"imagenet": Expected(3, {"train": 9, "val": 6})})
    val = imagenet_root / "val"
    assert report.errors == [
        f"{tmp_path / 's.yaml'}: datasets[0].root: imagenet: {val} has 2 class folders, expected 3: missing "
        f"n01000000 (looked in {val}); fix: point --data-root imagenet=PATH at the complete imagenet files, or set "
        f"datasets[0].val_limit_per_class to evaluate on a subset",
        f"{tmp_path / 's.yaml'}: datasets[0].root: imagenet: {val} has 4 val images, expected 6 (looked in {val}); "
        f"fix: point --data-root imagenet=PATH at the complete imagenet files, or set "
        f"datasets[0].val_limit_per_class to evaluate on a subset",
    ]


def test_full_dataset_counts_are_checked_against_the_dataset_table(tmp_path, imagenet_root, capsys):
    # The fixture has 3 of ImageNet's 1000 classes: the train folder cannot name the others, so it says how many.
    code, out = cli(capsys, "check", str(imagenet_suite(tmp_path, imagenet_root)))
    assert code == 2
    train = imagenet_root / "train"
    assert f"imagenet: {train} has 3 class folders, expected 1000 (looked in {train}); fix:" in out
    assert f"imagenet: {train} has 9 train images, expected 1,281,167 (looked in {train}); fix:" in out
    assert "problems; fix them before running" in out


def test_wrong_count_is_an_error_and_a_warning_under_limit_per_class(tmp_path, imagenet_root):
    (imagenet_root / "train" / "n03000000" / "n03000000_0.JPEG").unlink()
    expected = {"imagenet": Expected(3, {"train": 9, "val": 6})}
    train = imagenet_root / "train"
    report = run_check(imagenet_suite(tmp_path, imagenet_root), expected)
    assert report.errors == [f"{tmp_path / 's.yaml'}: datasets[0].root: imagenet: {train} has 8 train images, "
                             f"expected 9 (looked in {train}); fix: point --data-root imagenet=PATH at the complete "
                             f"imagenet files, or set datasets[0].limit_per_class to train on a subset"]
    limited = run_check(imagenet_suite(tmp_path, imagenet_root, ", limit_per_class: 2"), expected)
    assert limited.ok
    assert limited.warnings == [f"{tmp_path / 's.yaml'}: datasets[0].root: imagenet: {train} has 8 train images, "
                                f"expected 9 (looked in {train}) (datasets[0].limit_per_class is set, so this is a "
                                f"warning)"]
    assert limited.counts[("imagenet", str(imagenet_root), 2, None)] == {"train": 6, "val": 6}


def test_a_missing_tiny_imagenet_train_folder_is_reported_by_the_reader(tmp_path):
    root = write_tiny_imagenet(tmp_path / "tiny", n_train_per_class=2, n_val_per_class=1)
    shutil.rmtree(root / "train" / "n02000000" / "images")
    findings, _, _ = inspect_dataset("tiny_imagenet", root, None, None, path="s.yaml")
    assert findings[0] == ("error", f"s.yaml: datasets[0].root: tiny_imagenet: no train/n02000000/images under "
                                    f"{root}; incomplete extraction; unzip again")


def test_cifar_without_a_root_is_caught_before_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MIXBENCH_DATA_CIFAR10", raising=False)
    suite = write_suite(tmp_path, """
        name: chk
        datasets: [cifar10]
        backbones: [resnet18_cifar]
        methods: [vanilla]
        recipe: {epochs: 1, batch_size: 2}
    """)
    code, out = cli(capsys, "check", str(suite))
    assert code == 2
    assert (f"{suite}: datasets[0].root: cifar10: no data root given; pass --data-root cifar10=PATH "
            f"(or set MIXBENCH_DATA_CIFAR10)") in out


# ---- backbones, methods, batches ------------------------------------------------------------------------------


def test_bad_backbone_and_bad_method_are_named(tmp_path, imagenet_root):
    with pytest.raises(SuiteError, match=r"s\.yaml: backbones\[0\]\.name: unknown backbone 'resnet1800'"):
        expand(load_suite(p := imagenet_suite(tmp_path, imagenet_root, backbone="resnet1800")), p)
    with pytest.raises(SuiteError, match=r"s\.yaml: methods\[1\]\.name: unknown method 'mixupp'; registered: "):
        expand(load_suite(p := imagenet_suite(tmp_path, imagenet_root, methods="[vanilla, mixupp]")), p)


def test_method_constraint_at_the_suite_image_size(tmp_path, imagenet_root):
    expected = {"imagenet": Expected(3, {"train": 9, "val": 6})}
    # 48 px: PuzzleMix's 8-block grid gives 6-px blocks, not a whole number of 4-px neighbourhoods.
    report = run_check(imagenet_suite(tmp_path, imagenet_root, methods="[vanilla, puzzlemix]", image_size=48),
                       expected)
    [error] = report.errors
    assert error.startswith(f"{tmp_path / 's.yaml'}: methods[1]: puzzlemix on resnet18 at 48 px: PuzzleMix at 48×48 "
                            f"px with a 8×8 grid: blocks of 6×6 px are not a whole number of neigh_size=4 cells")
    assert error.endswith("fix: use block_num=[1, 3] (grids 2, 4), or change neigh_size / t_size")
    # AutoMix's Mix Block needs the stage it names.
    report = run_check(imagenet_suite(tmp_path, imagenet_root, methods="[{name: automix, mask_layer: 7}]"), expected)
    [error] = report.errors
    assert error.startswith(f"{tmp_path / 's.yaml'}: methods[0]: automix on resnet18 at 32 px: automix mask_layer=7 "
                            f"on resnet18: ")
    assert "fix: set method.mask_layer" in error


def test_batch_must_divide_over_the_gpus_and_fill_one_batch(tmp_path, imagenet_root):
    expected = {"imagenet": Expected(3, {"train": 9, "val": 6})}
    suite = imagenet_suite(tmp_path, imagenet_root)
    text = suite.read_text()
    suite.write_text(text.replace("batch_size: 2", "batch_size: 10") + "resources: {gpus_per_trial: 4}\n")
    [error] = run_check(suite, expected).errors
    assert error.startswith(f"{suite}: recipe.batch_size: 10 does not divide over resources.gpus_per_trial 4 (trial "
                            f"imagenet-resnet18-vanilla-s0-")
    suite.write_text(text.replace("batch_size: 2", "batch_size: 16"))
    [error] = run_check(suite, expected).errors
    assert error.startswith(f"{suite}: recipe.batch_size: imagenet has 9 train images in use, fewer than one batch "
                            f"of 16 (trial imagenet-resnet18-vanilla-s0-")
    assert error.endswith("fix: lower recipe.batch_size or raise datasets[].limit_per_class")


def test_run_refuses_to_start_when_the_check_fails(tmp_path, imagenet_root, capsys):
    code, out = cli(capsys, "run", str(imagenet_suite(tmp_path, imagenet_root)), "--results", str(tmp_path / "r"))
    assert code == 2
    assert "pre-flight check failed" in out and "nothing was run" in out
    assert not (tmp_path / "r" / "chk").exists()


def test_a_passing_check_lists_what_it_verified(tmp_path, imagenet_root, capsys):
    suite = imagenet_suite(tmp_path, imagenet_root, ", limit_per_class: 2, val_limit_per_class: 1",
                           methods="[vanilla, mixup, puzzlemix]")
    code, out = cli(capsys, "check", str(suite))
    assert code == 0, out
    assert f"ok: imagenet train: 9 images in 3 classes at {imagenet_root / 'train'}, 6 used (limit_per_class 2)" in out
    assert "ok: 1 backbones and 3 methods run at 32 px" in out
    assert f"{suite}: OK, 3 trials (chk), results in results/chk" in out


# ---- the dry run and its cost model ----------------------------------------------------------------------------


def test_dry_run_without_data_prints_the_estimate_from_the_dataset_table(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MIXBENCH_DATA_IMAGENET", raising=False)
    suite = write_suite(tmp_path, """
        name: est
        datasets: [imagenet]
        backbones: [resnet50]
        methods: [vanilla, automix]
        recipe: {epochs: 100, batch_size: 256, image_size: 224}
        resources: {gpus_per_trial: 4}
    """)
    code, out = cli(capsys, "run", str(suite), "--dry-run", "--results", str(tmp_path / "r"))
    assert code == 0, out
    assert "imagenet: no data root given, so nothing was counted (the estimate uses the full dataset's sizes)" in out
    assert "est: 2 trials, 2 to run" in out
    # ResNet-50 at 224 px: 8.18 GFLOP forward; 1,281,167 images x 100 epochs x 3 / 60 TFLOP/s = 14.6 GPU-h, plus
    # 50,000 eval forwards per epoch (0.2 GPU-h): 14.7; AutoMix x3 and two evaluated models: 43.7 + 0.4 = 44.0.
    assert "│ imagenet │ resnet50 │ vanilla │      1 │    100 │ 224 │          8.18 │       1 │        14.7 │" in out
    assert "│ imagenet │ resnet50 │ automix │      1 │    100 │ 224 │          8.18 │       3 │        44.0 │" in out
    assert "estimate: 2 trials, 58.8 GPU-hours (2.4 GPU-days); 2 to run: 58.8 GPU-hours" in out
    assert (tmp_path / "r" / ".cache" / "flops.json").is_file()  # FLOPs are cached beside the results
    assert not list((tmp_path / "r").rglob("config.yaml"))  # nothing ran


def test_measured_images_per_sec_replace_the_model(tmp_path):
    from mixbench.cost import estimate
    from mixbench.results import TrialRecord, write_record

    suite_path = write_suite(tmp_path, """
        name: est
        datasets: [{name: synthetic, limit_per_class: 100}]
        backbones: [resnet18_cifar]
        methods: [vanilla, mixup]
        recipe: {epochs: 10, batch_size: 100}
        resources: {gpus_per_trial: 2}
    """)
    [vanilla, mixup] = expand(load_suite(suite_path), suite_path)
    done = tmp_path / "r" / "est" / vanilla.dirname
    done.mkdir(parents=True)
    (done / "config.yaml").write_text(json.dumps(vanilla.model_dump(mode="json")))
    record = TrialRecord(trial_id=vanilla.trial_id, suite="est", dataset="synthetic", backbone="resnet18_cifar",
                         method="vanilla", method_label="vanilla", method_version=1, hparams={}, seed=0,
                         status="done", epochs=10, images_per_sec=2000.0, device="cuda", world_size=2,
                         gpu_name="NVIDIA H100", config=vanilla.model_dump(mode="json"))
    write_record(done, record)
    by_method = {e.trial.method: e for e in estimate([vanilla, mixup], tmp_path / "r")}
    measured = by_method["vanilla"]
    assert measured.basis == "measured 1,000 img/s/GPU (1 record, NVIDIA H100)"
    # 1000 train images x 10 epochs at 1000 img/s per GPU = 10 GPU-seconds (+ the eval forwards of the model).
    assert measured.gpu_hours * 3600 == pytest.approx(10.0, rel=0.01)
    assert by_method["mixup"].basis == "model"  # no record of mixup: the FLOP model
    # A CPU record (e.g. a --tiny run) says nothing about GPU cost.
    write_record(done, record.model_copy(update={"device": "cpu"}))
    assert estimate([vanilla], tmp_path / "r")[0].basis == "model"
