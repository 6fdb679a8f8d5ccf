"""The trainer: resume equals an uninterrupted run bit for bit, failures are recorded, real data is learned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from trial_configs import synthetic_trial

from mixbench.engine import TrialFailed, run_trial
from mixbench.optim import lr_at
from mixbench.results import read_metrics, read_record, write_config
from mixbench.suite import ScheduleConfig, TrialConfig

FASHION = Path("/usr/share/datasets/fashion-mnist")
HELPERS = Path(__file__).parent / "helpers"


def config(method: str = "mixup", epochs: int = 2, **changes) -> TrialConfig:
    recipe = {"batch_size": 16, "schedule": {"name": "cosine", "warmup_epochs": 0.5}}
    return synthetic_trial("test", method, epochs, seed=3, backbone="resnet_tiny_cifar", per_class=12,
                           val_per_class=6, base_recipe=recipe, **changes)


def weights(trial_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(trial_dir / "last.pt", weights_only=True)


def assert_same_training(a: Path, b: Path) -> None:
    sa, sb = weights(a), weights(b)
    assert sa["step"] == sb["step"] and sa["epoch"] == sb["epoch"]
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key
    for k, state in sa["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], sb["optimizer"]["state"][k]["momentum_buffer"])
    assert torch.equal(sa["generator"], sb["generator"])
    drop = {"train_seconds", "images_per_sec", "epoch_seconds", "peak_memory_mb"}
    rows_a = [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(a)]
    rows_b = [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(b)]
    assert rows_a == rows_b


@pytest.mark.parametrize("method", ["vanilla", "cutmix"])
def test_resume_equals_uninterrupted_training_bit_for_bit(tmp_path, method):
    cfg = config(method)
    straight = run_trial(cfg, tmp_path / "straight")
    assert straight.status == "done" and straight.epochs_done == 2
    first = run_trial(cfg, tmp_path / "resumed", stop_after_epoch=1)
    assert first.status == "interrupted" and first.epochs_done == 1
    resumed = run_trial(cfg, tmp_path / "resumed")
    assert resumed.status == "done"
    assert_same_training(tmp_path / "straight", tmp_path / "resumed")
    assert resumed.top1 == straight.top1


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    # Both runs as subprocesses with one thread: CPU float reductions depend on the thread count.
    env = {**os.environ, "MIXBENCH_THREADS": "1"}
    dirs = {name: tmp_path / name for name in ("straight", "killed")}
    for trial_dir in dirs.values():
        trial_dir.mkdir()
        write_config(trial_dir, config("mixup", epochs=3).model_dump(mode="json"))
    assert subprocess.run(engine(dirs["straight"]), env=env).returncode == 0
    proc = subprocess.Popen(engine(dirs["killed"]), env=env)
    deadline = time.time() + 120
    while not (dirs["killed"] / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: only the atomic checkpoint remains
    proc.wait()
    assert subprocess.run(engine(dirs["killed"]), env=env).returncode == 0
    assert read_record(dirs["killed"]).status == "done"
    assert_same_training(dirs["straight"], dirs["killed"])


def engine(trial_dir: Path) -> list[str]:
    return [sys.executable, "-m", "mixbench.engine", str(trial_dir)]


def test_non_finite_loss_fails_the_trial_with_its_reason(tmp_path):
    sys.path.insert(0, str(HELPERS))
    try:
        cfg = config("nan_method:NaNLoss")
        with pytest.raises(TrialFailed, match=r"non-finite loss \(nan\) at epoch 1, step 0"):
            run_trial(cfg, tmp_path / "nan")
    finally:
        sys.path.remove(str(HELPERS))
    record = read_record(tmp_path / "nan")
    assert record.status == "failed" and "non-finite loss (nan)" in record.reason


@pytest.mark.parametrize("check_every", [2, 50])
def test_a_late_non_finite_loss_names_its_step_and_the_loss_is_read_only_at_check_points(tmp_path, monkeypatch,
                                                                                      check_every):
    from mixbench import engine
    from mixbench.train_step import LossWatch

    reads = []
    read = LossWatch.read
    monkeypatch.setattr(LossWatch, "read", lambda watch: reads.append(watch.steps) or read(watch))
    monkeypatch.setattr(engine, "CHECK_EVERY", check_every)
    sys.path.insert(0, str(HELPERS))
    try:
        with pytest.raises(TrialFailed, match=r"non-finite loss \(nan\) at epoch 1, step 3$"):
            run_trial(config("nan_method:LateNaN"), tmp_path / f"late{check_every}")
    finally:
        sys.path.remove(str(HELPERS))
    # Read back every `check_every` steps (or once, at the end of the epoch), never after each step.
    if check_every == 2:
        assert reads == [2, 4]
    else:
        assert len(reads) == 1 and reads[0] > 4  # the whole epoch: NaN from step 3 on did not stop it earlier


def test_progress_lines_every_n_steps_and_a_checkpoint_of_plain_values(tmp_path, monkeypatch, capsys):
    from dataclasses import fields

    from mixbench import engine

    monkeypatch.setattr(engine, "CHECK_EVERY", 3)
    record = run_trial(config("vanilla", epochs=1), tmp_path / "t")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("mixbench: epoch")]
    assert lines and all(line.startswith(f"mixbench: epoch 1/1, step {3 * (i + 1)}/") for i, line in enumerate(lines))
    assert all("train loss" in line and "images/s" in line for line in lines)
    # The TrialState is saved with asdict: numbers, strings, lists and dicts beside tensors, so the checkpoint
    # loads without unpickling code.
    saved = torch.load(tmp_path / "t" / "last.pt", weights_only=True)
    assert {f.name for f in fields(engine.TrialState)} <= set(saved)
    assert saved["epoch"] == 1 and saved["epoch_progress"] == {"batches": 0, "sums": {}, "lr": 0.0, "seconds": 0.0}
    assert saved["world_sizes"] == [1] and saved["trial_id"] == record.trial_id


def test_record_is_self_describing(tmp_path):
    record = run_trial(config("vanilla", epochs=1), tmp_path / "t")
    assert record.versions["torch"] == torch.__version__ and record.versions["mixbench"]
    assert record.config["recipe"]["epochs"] == 1 and record.hparams["label_smoothing"] == 0.0
    assert record.images_per_sec > 0 and record.time_total_s > 0 and record.peak_memory_mb > 0
    assert record.device == "cpu" and record.seed == 3
    assert (tmp_path / "t" / "config.yaml").is_file()


def test_a_second_process_cannot_run_the_same_trial(tmp_path):
    from mixbench.engine import TrialBusy, trial_lock

    (tmp_path / "t").mkdir()
    with trial_lock(tmp_path / "t"), pytest.raises(TrialBusy, match="being run by another process"):
        run_trial(config("vanilla", epochs=1), tmp_path / "t")


def test_learning_rate_schedule():
    cosine = ScheduleConfig(name="cosine", warmup_epochs=1, warmup_start_factor=0.1, min_lr=0.01)
    assert lr_at(0, 1.0, 0.01, cosine, 10, 100) == pytest.approx(0.1)
    assert lr_at(5, 1.0, 0.01, cosine, 10, 100) == pytest.approx(0.55)
    assert lr_at(10, 1.0, 0.01, cosine, 10, 100) == pytest.approx(1.0)
    assert lr_at(55, 1.0, 0.01, cosine, 10, 100) == pytest.approx(0.505)
    assert lr_at(100, 1.0, 0.01, cosine, 10, 100) == pytest.approx(0.01)
    step = ScheduleConfig(name="step", milestones=[2, 4], gamma=0.1)
    assert [lr_at(s, 1.0, 0, step, 10, 60) for s in (0, 19, 20, 45)] == pytest.approx([1, 1, 0.1, 0.01])


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")
def test_real_fashion_mnist_subset_beats_chance(tmp_path):
    cfg = config(
        "mixup", epochs=3,
        dataset={"name": "fashion_mnist", "root": str(FASHION), "limit_per_class": 40, "val_limit_per_class": 20},
        recipe={"epochs": 3, "batch_size": 20, "num_workers": 0, "optimizer": {"lr": 0.05}},
    )
    record = run_trial(cfg, tmp_path / "fm")
    assert record.status == "done"
    assert record.top1 > 30.0, f"400 Fashion-MNIST images, 3 epochs: top-1 {record.top1:.1f} % (chance 10 %)"


def test_eval_every_validates_every_kth_and_the_last_n_epochs_and_trains_the_same_model(tmp_path):
    every = config("mixup", epochs=4)
    sparse = config("mixup", epochs=4, recipe={**every.recipe.model_dump(), "eval_every": 3, "last_n": 1})
    assert sparse.trial_id == config("mixup", epochs=4, recipe={**sparse.recipe.model_dump(), "eval_every": 1}).trial_id
    run_trial(every, tmp_path / "every")
    record = run_trial(sparse, tmp_path / "sparse")
    rows = read_metrics(tmp_path / "sparse")
    assert [r["epoch"] for r in rows if "top1" in r] == [3, 4]  # the 3rd, and the last (last_n = 1)
    assert [r["epoch"] for r in read_metrics(tmp_path / "every") if "top1" in r] == [1, 2, 3, 4]
    a, b = weights(tmp_path / "every"), weights(tmp_path / "sparse")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert record.top1 == read_metrics(tmp_path / "every")[-1]["top1"] and record.top1_median_last_n == record.top1
