"""The Slurm executor against a real one-node Slurm (tests/slurm_cluster.py): a suite runs as a job array, a failing
trial is isolated, nothing runs twice, a preempted job requeues and ends as an uninterrupted run, a DDP trial runs
as two tasks, status and cancel; and, without Slurm, the options and the engine's mid-epoch preemption."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from trial_configs import synthetic_trial

from mixbench.cli import main as mixbench
from mixbench.engine import Preempted, run_trial
from mixbench.results import load_records, read_metrics, read_record
from mixbench.runner.slurm import SlurmOptions, Submission, active_jobs, executor_parameters, slurm_minutes
from mixbench.suite import SuiteError, TrialConfig

HELPERS = Path(__file__).parent / "helpers"
TIMING = {"train_seconds", "images_per_sec", "epoch_seconds", "peak_memory_mb"}


def trial(method: str = "mixup", epochs: int = 2, **changes) -> TrialConfig:
    return synthetic_trial("slurm", method, epochs, seed=2, **changes)


def assert_same_training(a: Path, b: Path) -> None:
    """The same final weights, optimizer state, generator and per-epoch metrics (timings aside)."""
    sa, sb = (torch.load(d / "last.pt", weights_only=True) for d in (a, b))
    assert (sa["epoch"], sa["step"]) == (sb["epoch"], sb["step"])
    for key, value in sa["model"].items():
        assert torch.equal(value, sb["model"][key]), key
    for k, state in sa["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], sb["optimizer"]["state"][k]["momentum_buffer"])
    assert torch.equal(sa["generator"], sb["generator"])
    rows = [[{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(d)] for d in (a, b)]
    assert rows[0] == rows[1]


# ---- without Slurm -----------------------------------------------------------------------------------------


def test_slurm_time_limits_become_minutes():
    assert [slurm_minutes(v) for v in ("90", 90, "1:30:00", "2-00:00:00", "1-12", "0:30", "45:01")] == \
        [90, 90, 90, 2880, 2160, 1, 46]
    with pytest.raises(SuiteError, match=r"time '90m': not a Slurm time limit; fix: write minutes \(90\), "
                                         r"HH:MM:SS \(1:30:00\) or D-HH:MM:SS \(2-00:00:00\)"):
        slurm_minutes("90m")


def test_slurm_options_come_from_defaults_then_the_suite_then_the_command_line():
    config = trial(resources={"gpus_per_trial": 4, "cpus_per_trial": 32,
                              "slurm": {"partition": "long", "timeout_min": 600, "mem_gb": 64, "qos": "high",
                                        "max_num_timeout": 7, "additional_parameters": {"mail-type": "END"}}})
    params, max_requeues = executor_parameters(config, SlurmOptions(partition="short", time="1:00:00"))
    assert max_requeues == 7
    assert params["partition"] == "short" and params["time"] == 60  # the command line wins
    assert params["qos"] == "high" and params["mem"] == "64GB"  # submitit's generic names converted
    assert (params["nodes"], params["ntasks_per_node"], params["gpus_per_node"]) == (1, 4, 4)  # N tasks
    assert params["cpus_per_task"] == 8 and params["srun_args"] == ["--kill-on-bad-exit=1"]
    assert params["additional_parameters"] == {"requeue": True, "mail-type": "END"}
    cpu, _ = executor_parameters(trial(resources={"slurm": {"gpus_per_node": 0}}), SlurmOptions())
    assert "gpus_per_node" not in cpu and cpu["time"] == 240 and cpu["ntasks_per_node"] == 1


def test_an_unknown_slurm_option_is_one_clear_line():
    from mixbench.runner.slurm import _check_parameters

    params, _ = executor_parameters(trial(resources={"slurm": {"partiton": "gpu"}}), SlurmOptions())
    with pytest.raises(SuiteError, match=r"resources.slurm: unknown option partiton \(did you mean 'partition'\?\); "
                                         r"fix: use submitit's SlurmExecutor parameters \(.*\) or its generic names"):
        _check_parameters(params)


def test_a_trial_asked_to_stop_checkpoints_mid_epoch_and_resumes_bit_for_bit(tmp_path, one_thread):
    config = trial("mixup", epochs=2)  # 40 images, batch 8: 5 steps per epoch
    run_trial(config, tmp_path / "straight")
    polls = iter(range(100))  # polled after every step and after every epoch: the 8th poll is in epoch 2's 2nd step
    with pytest.raises(Preempted, match="preempted at epoch 2, step 7"):
        run_trial(config, tmp_path / "stopped", stop_requested=lambda: next(polls) == 7)
    record = read_record(tmp_path / "stopped")
    assert record.status == "interrupted" and record.reason.startswith("preempted at epoch 2, step 7; resumes")
    state = torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)
    assert state["step"] == 7 and state["epoch"] == 1 and state["epoch_progress"]["batches"] == 2
    assert run_trial(config, tmp_path / "stopped").status == "done"
    assert_same_training(tmp_path / "straight", tmp_path / "stopped")


# ---- against a real Slurm ------------------------------------------------------------------------------------


@pytest.fixture
def slurm_env(slurm_cluster, monkeypatch):
    """Submissions from this process reach the test cluster; its jobs inherit this environment (sbatch exports
    it): the helpers on PYTHONPATH, one thread per task (so results can be compared bit for bit)."""
    for key, value in {**slurm_cluster.env, "PYTHONPATH": str(HELPERS), "MIXBENCH_THREADS": "1",
                       "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(HELPERS))  # the suite is expanded here too
    return slurm_cluster


def write_suite(path: Path, name: str, methods: str, epochs: int, limit: int, resources: str) -> Path:
    path.write_text(textwrap.dedent(f"""
        name: {name}
        datasets: [{{name: synthetic, limit_per_class: {limit}, val_limit_per_class: 2}}]
        backbones: [test_resnet]
        methods: {methods}
        recipe: {{epochs: {epochs}, batch_size: 16, num_workers: 0}}
        resources: {resources}
    """))
    return path


def wait_for(condition, timeout: float, what: str, cluster) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.5)
    queue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\nsqueue:\n{queue}\n{cluster.log_tail()}")


def finished(suite_dir: Path, n: int) -> bool:
    records = load_records(suite_dir) if suite_dir.is_dir() else []
    return len(records) == n and all(r.status in ("done", "failed") for r in records)


def slurm_logs(suite_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((suite_dir / "slurm").rglob("*_log.out")))


@pytest.mark.slurm
@pytest.mark.slow
def test_a_suite_runs_as_a_job_array_and_nothing_runs_twice(slurm_env, tmp_path, capsys, record_property):
    suite = write_suite(tmp_path / "smoke.yaml", "slurm_smoke", '[vanilla, mixup, "nan_method:NaNLoss"]', epochs=1,
                        limit=6, resources="{slurm: {gpus_per_node: 0}}")
    results = tmp_path / "r"
    start = time.time()
    assert mixbench(["run", str(suite), "--executor", "slurm", "--results", str(results)]) == 0
    assert "3 trials submitted" in capsys.readouterr().out
    wait_for(lambda: finished(results / "slurm_smoke", 3), 300, "the three trials", slurm_env)
    wall = time.time() - start
    record_property("slurm_smoke_wall_s", round(wall, 1))
    with capsys.disabled():  # shown with -s
        print(f"\nSlurm smoke suite: {wall:.1f} s from submission to the last record")

    records = {r.method: r for r in load_records(results / "slurm_smoke")}
    for method in ("vanilla", "mixup"):
        assert records[method].status == "done" and records[method].top1 is not None, records[method].reason
    assert records["nan_method:NaNLoss"].status == "failed"
    assert "non-finite loss (nan) at epoch 1, step 0" in records["nan_method:NaNLoss"].reason
    assert mixbench(["status", str(suite), "--results", str(results)]) == 0
    assert "slurm_smoke: 3 trials: 2 done, 1 failed" in capsys.readouterr().out

    trial_dirs = [d for d in (results / "slurm_smoke").iterdir() if (d / "slurm.json").is_file()]
    jobs = {d.name: Submission.read(d).job_id for d in trial_dirs}
    assert mixbench(["run", str(suite), "--executor", "slurm", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "0 trials submitted" in out and "failed earlier" in out
    assert jobs == {d: Submission.read(results / "slurm_smoke" / d).job_id for d in jobs}  # nothing resubmitted


@pytest.mark.slurm
@pytest.mark.slow
def test_a_preempted_job_requeues_and_ends_as_an_uninterrupted_run(slurm_env, tmp_path, capsys):
    # 400 images, batch 16: 25 steps per epoch, a few seconds an epoch with one thread.
    suite = write_suite(tmp_path / "pre.yaml", "slurm_pre", "[mixup]", epochs=3, limit=40,
                        resources="{slurm: {gpus_per_node: 0}}")
    results = tmp_path / "r"
    assert mixbench(["run", str(suite), "--executor", "slurm", "--results", str(results)]) == 0
    (trial_dir,) = [d for d in (results / "slurm_pre").iterdir() if (d / "config.yaml").is_file()]
    job_id = Submission.read(trial_dir).job_id
    # Submitted again while queued or running: skipped.
    assert mixbench(["run", str(suite), "--executor", "slurm", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "0 trials submitted" in out and f"as job {job_id}" in out

    # The same trial, uninterrupted, beside it: one thread too, so the float reductions are the same.
    reference = tmp_path / "reference"
    reference.mkdir()
    shutil.copy(trial_dir / "config.yaml", reference / "config.yaml")
    straight = subprocess.Popen([sys.executable, "-m", "mixbench.engine", str(reference)],
                                env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})

    wait_for(lambda: (trial_dir / "last.pt").is_file(), 300, "the first epoch's checkpoint", slurm_env)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)  # what Slurm sends before a time limit
    wait_for(lambda: (r := read_record(trial_dir)) is not None and r.status == "done", 300,
             "the requeued job to finish the trial", slurm_env)
    assert straight.wait(timeout=300) == 0

    logs = slurm_logs(results / "slurm_pre")
    assert "mixbench: preempted at epoch" in logs and f"Requeued job {job_id}" in logs
    with capsys.disabled():  # shown with -s
        print("\n" + next(line for line in logs.splitlines() if line.startswith("mixbench: preempted")))
    assert Submission.read(trial_dir).job_id == job_id  # the same job, requeued
    assert read_record(trial_dir).epochs_done == 3
    assert_same_training(reference, trial_dir)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_ddp_trial_runs_as_two_slurm_tasks(slurm_env, tmp_path, capsys):
    suite = write_suite(tmp_path / "ddp.yaml", "slurm_ddp", "[vanilla]", epochs=1, limit=4,
                        resources="{gpus_per_trial: 2, slurm: {gpus_per_node: 0}}")
    results = tmp_path / "r"
    assert mixbench(["run", str(suite), "--executor", "slurm", "--results", str(results)]) == 0
    wait_for(lambda: finished(results / "slurm_ddp", 1), 300, "the DDP trial", slurm_env)
    (record,) = load_records(results / "slurm_ddp")
    assert record.status == "done", record.reason
    assert record.world_size == 2 and record.per_process_batch == 8
    trial_dir = results / "slurm_ddp" / TrialConfig.model_validate(record.config).dirname
    assert Submission.read(trial_dir).tasks == 2


@pytest.mark.slurm
def test_status_and_cancel_of_a_queued_job(slurm_env, tmp_path, capsys):
    # Held back an hour by Slurm (--begin), so it stays queued and costs nothing.
    suite = write_suite(tmp_path / "held.yaml", "slurm_held", "[vanilla]", epochs=1, limit=4,
                        resources="{slurm: {gpus_per_node: 0, additional_parameters: {begin: now+3600}}}")
    results = tmp_path / "r"
    assert mixbench(["run", str(suite), "--executor", "slurm", "--results", str(results)]) == 0
    (trial_dir,) = [d for d in (results / "slurm_held").iterdir() if (d / "config.yaml").is_file()]
    job_id = json.loads((trial_dir / "slurm.json").read_text())["job_id"]
    capsys.readouterr()
    assert mixbench(["status", str(suite), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "slurm_held: 1 trials: 1 queued" in out and f"job {job_id} (pending, BeginTime)" in out

    assert mixbench(["cancel", str(suite), "--results", str(results)]) == 0
    assert f"cancelled job {job_id}" in capsys.readouterr().out
    wait_for(lambda: job_id not in active_jobs(), 60, "the cancelled job to leave the queue", slurm_env)
    assert mixbench(["status", str(suite), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "1 stopped" in out and f"job {job_id} ended before the trial started" in out
