"""benchmarks/gpu_check.py, the prepared GPU check, in its CPU form: every part runs (or says why it is
skipped), correctness parts pass, and the figures land in the JSON a reader compares against the README."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_cpu_form_runs_every_part_and_writes_its_figures(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIXBENCH_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "SyncBatchNorm skipped: CUDA only" in proc.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = {p["name"]: p for p in report["parts"]}
    assert list(parts) == ["1 smoke", "2 throughput", "3 methods", "4 ddp", "5 resume", "6 cost model"]
    assert {p["status"] for p in parts.values()} <= {"pass", "below target"}
    assert set(parts["1 smoke"]["figures"]["top1"]) == {"smoke-tiny/vanilla", "smoke-tiny/mixup"}
    assert parts["2 throughput"]["figures"]["test_resnet@32"]["ratio"] > 0
    assert {"quick/mixup", "quick/cutmix"} <= set(parts["3 methods"]["figures"])
    assert parts["4 ddp"]["figures"]["ddp"]["loss_rel_gap"] == 0.0  # gloo, 1 process, CPU: bit-identical
    assert parts["5 resume"]["figures"]["loss_rel_gap"] == 0.0  # CPU resume is bit-exact
    assert report["environment"]["device"] == "cpu"
    assert (tmp_path / "gpu_check.md").read_text().startswith("gpu_check: ")


def test_asking_for_cuda_without_one_is_one_line(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--device", "cuda"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "--device cuda: no CUDA device is visible here; use --device cpu" in proc.stderr
