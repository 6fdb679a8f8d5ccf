"""Nothing finished is lost and nothing loaded runs code: checkpoints, damaged records and metrics, pickles."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import write_cifar10
from trial_configs import synthetic_trial

from mixbench import checkpoint
from mixbench.data import load_split
from mixbench.engine import TrialFailed, run_trial
from mixbench.results import (
    DamagedFile,
    TrialRecord,
    read_metrics,
    read_record,
    under_contention,
    variant_labels,
)


class RunsCode:
    """Unpickling this runs `touch MARKER`: what a planted file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def tiny(method: str = "vanilla", epochs: int = 2, seed: int = 0):
    return synthetic_trial("integrity", method, epochs, seed=seed, per_class=2, val_per_class=1)


# ---- checkpoint files ---------------------------------------------------------------------------------------


def test_save_keeps_the_previous_checkpoint_and_load_falls_back_when_the_latest_is_torn(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"epoch": 1, "w": torch.ones(3)})
    assert not (tmp_path / "previous.pt").exists()
    checkpoint.save(path, {"epoch": 2, "w": torch.full((3,), 2.0)})
    assert checkpoint.load(path)["epoch"] == 2
    assert torch.load(tmp_path / "previous.pt", weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "previous.pt"]  # no temporary left behind

    path.write_bytes(path.read_bytes()[:100])  # torn
    heard = []
    state = checkpoint.load(path, warn=heard.append)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert len(heard) == 1 and "previous.pt" in heard[0] and "truncated or corrupt" in heard[0]

    path.unlink()  # killed between the two renames of save(): only previous.pt is there
    assert checkpoint.load(path, warn=heard.append)["epoch"] == 1


def test_a_torn_checkpoint_without_an_earlier_one_is_one_line_naming_it_and_the_fix(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"epoch": 1})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(checkpoint.CheckpointError,
                       match=rf"^{path}: truncated or corrupt checkpoint \(.*\); no earlier checkpoint to fall back "
                             rf"to; fix: delete {path} to start the trial afresh, then run the suite again with "
                             r"--retry-failed$"):
        checkpoint.load(path)
    assert checkpoint.load(tmp_path / "absent.pt") is None


def test_a_planted_pickle_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "last.pt"
    torch.save({"epoch": 1, "payload": RunsCode(marker)}, path)  # a checkpoint-shaped file with code in it
    with pytest.raises(checkpoint.CheckpointError,
                       match=rf"^{path}: refused to load: it holds objects other than tensors and plain values, "
                             r"which a mixbench checkpoint never does \(.*\); no earlier checkpoint"):
        checkpoint.load(path)
    assert not marker.exists()


def test_the_engine_refuses_a_planted_checkpoint_with_one_line_and_records_it(tmp_path, one_thread):
    marker = tmp_path / "ran"
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    torch.save({"epoch": 1, "payload": RunsCode(marker)}, trial_dir / "last.pt")
    with pytest.raises(TrialFailed, match=r"last.pt: refused to load"):
        run_trial(tiny(), trial_dir)
    record = read_record(trial_dir)
    assert record.status == "failed" and "\n" not in record.reason and "refused to load" in record.reason
    assert not marker.exists()


def test_every_checkpoint_the_engine_writes_loads_with_weights_only(tmp_path, one_thread):
    for method in ("vanilla", "automix"):
        run_trial(tiny(method, epochs=1), tmp_path / method)
        state = torch.load(tmp_path / method / "last.pt", weights_only=True)
        assert state["epoch"] == 1 and state["generator"].dtype == torch.uint8


def test_a_torn_latest_checkpoint_resumes_from_the_previous_epoch_and_ends_as_an_uninterrupted_run(tmp_path,
                                                                                                   one_thread):
    straight = run_trial(tiny(epochs=3), tmp_path / "straight")
    resumed_dir = tmp_path / "resumed"
    run_trial(tiny(epochs=3), resumed_dir, stop_after_epoch=2)
    assert (resumed_dir / "previous.pt").is_file()  # epoch 1's, kept until epoch 2's was verified
    (resumed_dir / "last.pt").write_bytes((resumed_dir / "last.pt").read_bytes()[:1000])
    resumed = run_trial(tiny(epochs=3), resumed_dir)  # retrains epoch 2 from epoch 1's checkpoint
    assert resumed.status == "done" and resumed.top1 == straight.top1
    assert [r["epoch"] for r in read_metrics(resumed_dir)] == [1, 2, 3]
    assert not (resumed_dir / "previous.pt").exists()  # a finished trial keeps only its final checkpoint


# ---- records and metrics ------------------------------------------------------------------------------------


def test_a_garbage_record_or_metrics_line_is_one_line_naming_the_file_and_the_fix(tmp_path):
    (tmp_path / "record.json").write_text("{not json")
    with pytest.raises(DamagedFile, match=rf"^{tmp_path}/record.json: unreadable record \(.*\); fix: run the suite "
                                          r"again \(with --retry-failed if the trial failed\): a finished trial's"):
        read_record(tmp_path)
    (tmp_path / "record.json").write_text('{"trial_id": 3}')
    with pytest.raises(DamagedFile, match=r"record.json: unreadable record \(trial_id: Input should be a valid str"):
        read_record(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "top1": 5.0}\n\x00\x00garbage\n')
    with pytest.raises(DamagedFile, match=rf"^{tmp_path}/metrics.jsonl: line 2 is not JSON \(.*\); fix: run the "):
        read_metrics(tmp_path)


def test_a_finished_trial_with_an_unreadable_record_is_rebuilt_from_its_checkpoint_without_training(tmp_path,
                                                                                                  one_thread):
    trial_dir = tmp_path / "trial"
    done = run_trial(tiny(), trial_dir)
    steps = torch.load(trial_dir / "last.pt", weights_only=True)["step"]
    (trial_dir / "record.json").write_text("garbage")
    (trial_dir / "metrics.jsonl").write_text("garbage\n")
    rebuilt = run_trial(tiny(), trial_dir)
    assert rebuilt.status == "done" and rebuilt.top1 == done.top1 and rebuilt.top1_best == done.top1_best
    assert read_record(trial_dir).top1 == done.top1
    assert [r["epoch"] for r in read_metrics(trial_dir)] == [1, 2]
    assert torch.load(trial_dir / "last.pt", weights_only=True)["step"] == steps  # not one more step trained


def test_a_trial_stopped_in_its_evaluation_stays_done_and_the_next_run_finishes_it(monkeypatch, tmp_path, one_thread):
    from mixbench import evaluate
    from mixbench.engine import Interrupted
    from mixbench.runner.local import _finish, plan
    from mixbench.runner.slurm import suite_status

    config, trial_dir = tiny(), tmp_path / "suite" / tiny().dirname
    measured = evaluate.measure

    def stopped_at_the_second_part(passes, model, key, corrupted):
        if (trial_dir / evaluate.ROBUSTNESS).is_file() and evaluate.read_robustness(trial_dir)["parts"]:
            raise Interrupted("SIGTERM")
        return measured(passes, model, key, corrupted)

    monkeypatch.setattr(evaluate, "measure", stopped_at_the_second_part)
    with pytest.raises(Interrupted):
        run_trial(config, trial_dir)
    record = read_record(trial_dir)
    assert record.status == "done" and record.evaluation == {} and record.epochs_done == 2  # not "interrupted"
    assert len(evaluate.read_robustness(trial_dir)["parts"]["model"]) == 1
    stamp, steps = (trial_dir / "record.json").read_bytes(), torch.load(trial_dir / "last.pt")["step"]

    [job] = plan([config], trial_dir.parent, retry_failed=False)
    assert (job.state, job.note) == ("queued", "finishing its evaluation")
    [row] = suite_status([config], trial_dir.parent)
    assert (row.state, row.note) == ("done", "its evaluation was cut short; it finishes when run again")
    for code, why in ((-9, "killed by SIGKILL (out of memory?)"), (130, "stopped by SIGTERM or SIGINT")):
        _finish(job, code)  # what the runner sees when the engine is killed there: the trial is not failed
        assert (job.state, job.note) == ("done", f"{why} in its evaluation; it finishes on the next run")
        assert (trial_dir / "record.json").read_bytes() == stamp

    monkeypatch.setattr(evaluate, "measure", measured)
    finished = run_trial(config, trial_dir)
    assert finished.status == "done"
    assert read_record(trial_dir).evaluation["model"]["top1"] == pytest.approx(record.top1)
    assert torch.load(trial_dir / "last.pt")["step"] == steps  # evaluated, not trained again
    again = read_record(trial_dir)
    assert (again.started_at, again.top1, again.time_total_s) == (record.started_at, record.top1, record.time_total_s)
    assert plan([config], trial_dir.parent, retry_failed=False)[0].state == "skipped"


def test_a_killed_trial_never_turns_a_done_or_unreadable_record_into_a_failed_one(tmp_path, one_thread):
    from mixbench.engine import failed_record

    trial_dir = tmp_path / "trial"
    run_trial(tiny(epochs=1), trial_dir)
    done = (trial_dir / "record.json").read_bytes()
    assert failed_record(tiny(epochs=1), trial_dir, "killed by SIGKILL").status == "done"
    assert (trial_dir / "record.json").read_bytes() == done
    (trial_dir / "record.json").write_bytes(done[:40] + b"\x00garbage")  # the next run rebuilds it: keep it so
    assert failed_record(tiny(epochs=1), trial_dir, "killed by SIGKILL").status == "failed"
    assert (trial_dir / "record.json").read_bytes() == done[:40] + b"\x00garbage"
    (trial_dir / "record.json").unlink()
    failed_record(tiny(epochs=1), trial_dir, "killed by SIGKILL")
    assert read_record(trial_dir).status == "failed" and read_record(trial_dir).reason == "killed by SIGKILL"


# ---- costs under load ---------------------------------------------------------------------------------------


def test_records_say_how_many_threads_and_how_busy_the_machine_was(tmp_path, one_thread):
    record = run_trial(tiny(epochs=1), tmp_path / "t")
    assert record.threads == 1 and record.cpu_count == os.cpu_count()
    assert record.load_avg_start is not None and record.load_avg_end is not None
    quiet = record.model_copy(update={"cpu_count": 4, "load_avg_start": 1.0, "load_avg_end": 3.9})
    busy = record.model_copy(update={"cpu_count": 4, "load_avg_start": 1.0, "load_avg_end": 6.5})
    unknown = record.model_copy(update={"load_avg_start": None, "load_avg_end": None})
    assert (under_contention(quiet), under_contention(busy), under_contention(unknown)) == (False, True, False)


# ---- variant labels -----------------------------------------------------------------------------------------


def test_variant_labels_name_what_differs_and_only_where_it_differs():
    def record(method: str, seed: int, **hparams) -> TrialRecord:
        config = tiny(method, seed=seed).model_copy(update={"hparams": hparams})
        return TrialRecord(trial_id=config.trial_id, suite="s", dataset="synthetic", backbone="test_resnet",
                           method=method, method_label=method, method_version=1, hparams=hparams, seed=seed,
                           status="done", epochs=2, config=config.model_dump(mode="json"))

    records = [record("cutmix", 0, alpha=0.2), record("cutmix", 1, alpha=0.2), record("cutmix", 0, alpha=1.0),
               record("mixup", 0, alpha=1.0), record("mixup", 1, alpha=1.0)]
    assert variant_labels(records) == ["cutmix (alpha=0.2)", "cutmix (alpha=0.2)", "cutmix (alpha=1.0)",
                                       "mixup", "mixup"]


# ---- CIFAR pickles ------------------------------------------------------------------------------------------


def test_the_cifar_reader_refuses_a_pickle_that_runs_code(tmp_path):
    folder = write_cifar10(tmp_path, n_per_class=1, num_classes=2)
    marker = tmp_path / "ran"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": RunsCode(marker)}, f, protocol=2)
    with pytest.raises(ValueError, match=r"^cifar10: .*test_batch is not a CIFAR pickle, refused \(it names "
                                         r"posix.system, which a CIFAR batch never holds\); fix: re-extract"):
        load_split("cifar10", folder, "val")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_the_cifar_reader_still_reads_arrays_lists_and_strings_at_any_protocol(tmp_path, protocol):
    folder = write_cifar10(tmp_path, n_per_class=1, num_classes=2)
    images = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072).astype(np.uint8)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "data": images, "labels": [1, 0],
                     "filenames": [b"a.png", b""]}, f, protocol=protocol)
    val = load_split("cifar10", folder, "val")
    assert val.labels.tolist() == [1, 0] and torch.equal(val.images.reshape(2, -1), torch.from_numpy(images))


# ---- the report's cost table --------------------------------------------------------------------------------


def test_the_cost_table_marks_figures_measured_under_contention_and_says_why(tmp_path):
    from test_report import write_trial

    from mixbench.report import CONTENDED_NOTE, write_report
    from mixbench.results import write_record

    for method in ("vanilla", "mixup", "cutmix"):
        write_trial(tmp_path, method, 0, [50.0, 60.0])
    report = write_report(tmp_path, tmp_path / "quiet")
    [cost] = report.tables["cost"]
    assert [row[2] for row in cost.rows] == ["vanilla", "mixup", "cutmix"] and CONTENDED_NOTE not in cost.caption

    for trial_dir in tmp_path.glob("demo/*-mixup-*"):  # mixup measured while 6 processes wanted 4 cores
        record = read_record(trial_dir)
        write_record(trial_dir, record.model_copy(update={"cpu_count": 4, "load_avg_start": 2.0,
                                                          "load_avg_end": 6.0}))
    report = write_report(tmp_path, tmp_path / "busy")
    [cost] = report.tables["cost"]
    assert [row[2] for row in cost.rows] == ["vanilla", "mixup †", "cutmix"]
    assert CONTENDED_NOTE in cost.caption and CONTENDED_NOTE in (tmp_path / "busy" / "README.md").read_text()


def test_results_files_get_the_permissions_of_an_ordinary_file_not_a_private_one(tmp_path):
    from mixbench.results import atomic_write_text

    mask = os.umask(0)
    os.umask(mask)
    atomic_write_text(tmp_path / "record.json", "{}")
    assert (tmp_path / "record.json").stat().st_mode & 0o777 == 0o666 & ~mask  # readable by the group, as open()'s


def test_evaluate_refuses_a_planted_checkpoint_too(tmp_path):
    from types import SimpleNamespace

    from mixbench.evaluate import load_weights

    marker = tmp_path / "ran"
    torch.save({"epoch": 1, "payload": RunsCode(marker)}, tmp_path / "last.pt")
    with pytest.raises(TrialFailed, match=r"last.pt: refused to load"):
        load_weights(SimpleNamespace(device="cpu", config=tiny()), tmp_path / "last.pt")
    assert not marker.exists()
