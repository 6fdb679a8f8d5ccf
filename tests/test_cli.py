"""End to end through the command line: the smoke suite runs, resumes/skips, reports; failures are isolated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mixbench.results import load_records

REPO = Path(__file__).parents[1]
HELPERS = Path(__file__).parent / "helpers"


def mixbench(*args: str, cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # The checkout under test first: an installed mixbench elsewhere must not answer for it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HELPERS)]), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "mixbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_smoke_suite_end_to_end(tmp_path):
    result = mixbench("run", str(REPO / "suites" / "smoke.yaml"), "--results", str(tmp_path), "--jobs", "2",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    records = load_records(tmp_path / "smoke")
    assert {r.method for r in records} >= {"vanilla", "mixup", "cutmix"}
    for record in records:
        assert record.status == "done", record.reason
        assert record.top1 > 20.0, f"{record.method}: {record.top1} % on 10 synthetic classes (chance 10 %)"
    assert "| synthetic | test_resnet | vanilla |" in result.stdout
    assert (tmp_path / "smoke" / "report" / "accuracy.csv").is_file()

    again = mixbench("run", str(REPO / "suites" / "smoke.yaml"), "--results", str(tmp_path), cwd=tmp_path)
    assert again.returncode == 0 and f"{len(records)} trials, 0 to run" in again.stdout


@pytest.mark.slow
def test_second_smoke_suite_end_to_end(tmp_path):
    """suites/smoke_more.yaml: the mixers added after the first smoke suite, each beating chance clearly."""
    from mixbench.suite import load_suite

    suite = load_suite(REPO / "suites" / "smoke_more.yaml")
    result = mixbench("run", str(REPO / "suites" / "smoke_more.yaml"), "--results", str(tmp_path), "--jobs", "2",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    records = load_records(tmp_path / "smoke_more")
    assert {r.method for r in records} == {m.name for m in suite.methods}
    for record in records:
        assert record.status == "done", record.reason
        assert record.top1 > 20.0, f"{record.method}: {record.top1} % on 10 synthetic classes (chance 10 %)"


def test_a_failing_trial_is_recorded_and_the_suite_goes_on(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent("""
        name: iso
        datasets: [{name: synthetic, limit_per_class: 4, val_limit_per_class: 2}]
        backbones: [resnet_tiny_cifar]
        methods: ["nan_method:NaNLoss", vanilla]
        recipe: {epochs: 1, batch_size: 8, num_workers: 0}
    """))
    result = mixbench("run", str(suite), "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    status = {r.method: r for r in load_records(tmp_path / "r" / "iso")}
    assert status["vanilla"].status == "done"
    assert status["nan_method:NaNLoss"].status == "failed"
    assert "non-finite loss" in status["nan_method:NaNLoss"].reason
    rerun = mixbench("run", str(suite), "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert "failed earlier" in rerun.stdout and "0 to run" in rerun.stdout
    # Nothing ran, yet the suite is not done: the exit code says so, and the line says how to retry.
    assert rerun.returncode == 1, rerun.stdout
    assert (f"1 of 2 trials failed (reasons above); after fixing the cause, rerun them with: mixbench run {suite} "
            f"--results {tmp_path / 'r'} --retry-failed") in rerun.stdout
    retry = mixbench("run", str(suite), "--results", str(tmp_path / "r"), "--retry-failed", "--only",
                     "method=nan_method:NaNLoss", cwd=tmp_path)
    assert "1 trials, 1 to run" in retry.stdout


def test_bad_suite_is_one_clear_line_and_nothing_runs(tmp_path):
    suite = tmp_path / "bad.yaml"
    suite.write_text("name: b\ndatasets: [synthetic]\nbackbones: [resnet_tiny_cifar]\nmethods: [mixup]\n"
                     "recipe: {epochs: 1, batch_sise: 8}\n")
    result = mixbench("run", str(suite), "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2
    assert "bad.yaml: recipe.batch_sise: unknown key; fix: remove it (did you mean 'batch_size'?" in result.stdout
    assert not (tmp_path / "r").exists()


def test_dry_run_lists_the_grid_without_running(tmp_path):
    result = mixbench("run", str(REPO / "suites" / "smoke.yaml"), "--results", str(tmp_path), "--dry-run",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "to run" in result.stdout and not list(tmp_path.rglob("record.json"))


def test_ls_lists_methods_and_datasets(tmp_path):
    result = mixbench("ls", cwd=tmp_path)
    assert result.returncode == 0
    assert "mixup" in result.stdout and "fashion_mnist" in result.stdout


def test_config_yaml_round_trips_through_the_engine(tmp_path):
    # The runner writes config.yaml; the engine subprocess reads it back: same trial id.
    from mixbench.suite import expand, load_suite

    trial = expand(load_suite(REPO / "suites" / "smoke.yaml"))[0]
    from mixbench.results import write_config

    write_config(tmp_path, trial.model_dump(mode="json"))
    import yaml

    from mixbench.suite import TrialConfig

    again = TrialConfig.model_validate(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert again.trial_id == trial.trial_id
    assert json.dumps(again.identity(), sort_keys=True) == json.dumps(trial.identity(), sort_keys=True)


def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(tmp_path):
    import signal
    import time

    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent("""
        name: stop
        datasets: [{name: synthetic, limit_per_class: 10, val_limit_per_class: 2}]
        backbones: [test_resnet]
        methods: [mixup]
        recipe: {epochs: 8, batch_size: 10, num_workers: 0}
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HELPERS)])}
    cmd = [sys.executable, "-m", "mixbench.cli", "run", str(suite), "--results", str(tmp_path / "r")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not list((tmp_path / "r").rglob("last.pt")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "run the same command to resume" in out
    [record] = load_records(tmp_path / "r" / "stop")
    assert record.status == "interrupted" and 1 <= record.epochs_done < 8
    resumed = mixbench("run", str(suite), "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout
    [record] = load_records(tmp_path / "r" / "stop")
    assert record.status == "done" and record.epochs_done == 8
