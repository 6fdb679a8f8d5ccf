"""Fault injection: kill the runner and trials at random points, corrupt every kind of file, rerun; in the end every
trial is done, no record was lost or torn, no finished trial was trained again, and the results equal an
uninterrupted run's."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from mixbench.engine import run_trial
from mixbench.results import read_metrics, read_record
from mixbench.suite import expand, load_suite

REPO = Path(__file__).parents[1]
EPOCHS = 6  # a trial keeps previous.pt from its 2nd epoch to its last: a wide window to tear last.pt in
TIMING = {"train_seconds", "images_per_sec", "epoch_seconds", "peak_memory_mb"}
KINDS = ("record", "metrics", "checkpoint")


def write_suite(folder: Path) -> Path:
    path = folder / "faults.yaml"
    path.write_text(textwrap.dedent(f"""
        name: faults
        datasets: [{{name: synthetic, limit_per_class: 2, val_limit_per_class: 1}}]
        backbones: [test_resnet]
        methods: [vanilla, mixup]
        seeds: [0]
        recipe: {{epochs: {EPOCHS}, batch_size: 10, num_workers: 0, last_n: 2}}
    """))
    return path


def start_runner(suite: Path, results: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MIXBENCH_THREADS": "1"}
    command = [sys.executable, "-m", "mixbench.cli", "run", str(suite), "--results", str(results), "--no-live",
               "--jobs", "2", "--retry-failed"]  # a trial killed by SIGKILL is recorded failed: retry it
    with open(log, "a") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def engines(results: Path) -> list[int]:
    """Process ids of the trials running on `results`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"mixbench.engine" in cmdline and str(results).encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def epochs_done(results: Path) -> int:
    total = 0
    for path in results.rglob("metrics.jsonl"):
        with contextlib.suppress(ValueError, OSError):
            total += len(read_metrics(path.parent))
    return total


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_until(condition, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def corrupt(kind: str, trial_dirs: list[Path], rng: random.Random) -> Path | None:
    """Damage one file of one trial the way disks and careless hands do; returns it (None: nothing to damage)."""
    if kind == "checkpoint":  # torn: only where the previous epoch's checkpoint is there to fall back to
        candidates = [d / "last.pt" for d in trial_dirs if (d / "previous.pt").is_file() and (d / "last.pt").is_file()]
    else:
        candidates = [d / {"record": "record.json", "metrics": "metrics.jsonl"}[kind] for d in trial_dirs]
        candidates = [p for p in candidates if p.is_file()]
    if not candidates:
        return None
    path = rng.choice(candidates)
    data = path.read_bytes()
    if kind == "checkpoint":
        path.write_bytes(data[: rng.randrange(1, len(data))])
    elif kind == "record":
        path.write_bytes(data[: rng.randrange(0, len(data))] + b"\x00garbage")
    else:
        path.write_bytes(data + b'{"epoch": 9, "top1": \n')
    return path


def fingerprint(trial_dir: Path) -> tuple:
    """What a finished trial is: its final checkpoint's bytes, its metrics less timings, when it started."""
    rows = [{k: v for k, v in row.items() if k not in TIMING} for row in read_metrics(trial_dir)]
    digest = hashlib.sha256((trial_dir / "last.pt").read_bytes()).hexdigest()
    return digest, json.dumps(rows, sort_keys=True), read_record(trial_dir).started_at


@pytest.mark.slow
def test_kills_and_corruption_at_random_points_end_with_every_trial_done_and_nothing_lost(tmp_path, one_thread):
    rng = random.Random(16)
    suite = write_suite(tmp_path)
    results = tmp_path / "results"
    suite_dir = results / "faults"
    log = tmp_path / "runs.log"
    trials = expand(load_suite(suite))
    trial_dirs = [suite_dir / t.dirname for t in trials]
    total_epochs = EPOCHS * len(trials)

    finished: dict[Path, tuple] = {}  # trial dir -> fingerprint when first seen done
    damaged: dict[Path, bytes] = {}  # files this test damaged, with the bytes it left there
    pending = ["checkpoint", "record", "metrics"]  # each damaged at least once; a torn checkpoint while trials run
    for repetition in range(10):
        if not pending and repetition >= 5:
            break
        kind = pending[0] if pending else rng.choice(KINDS)
        runner = start_runner(suite, results, log)
        # Kill at a random point of the training: after a random number of the epochs left, then a random part of a
        # step. A torn checkpoint needs a trial past its second epoch and not finished: one that keeps previous.pt.
        if kind == "checkpoint":
            reached = lambda: any((d / "previous.pt").is_file() for d in trial_dirs)  # noqa: E731
        else:
            target = epochs_done(results) + rng.randrange(0, max(total_epochs - epochs_done(results), 1))
            reached = lambda t=target: epochs_done(results) >= t  # noqa: E731
        wait_until(lambda r=runner, reached=reached: reached() or r.poll() is not None)
        time.sleep(rng.uniform(0.0, 0.4))
        how = rng.choice(["runner", "trial", "everything"])
        running = engines(results)
        if how == "trial" and running:
            kill(rng.choice(running))  # the runner records it failed and goes on
        else:
            kill(runner.pid)  # its trials get SIGTERM (stop with the parent) and record themselves interrupted
            if how == "everything":
                for pid in running:  # a machine crash: nobody cleans up
                    kill(pid)
        runner.wait(timeout=300)
        wait_until(lambda: not engines(results))

        # Nothing torn, nothing lost: every file is either whole or the damage this test did and nobody repaired.
        for path, garbage in list(damaged.items()):
            if not path.is_file() or path.read_bytes() != garbage:
                del damaged[path]
        for trial_dir in trial_dirs:
            if trial_dir / "record.json" not in damaged:
                record = read_record(trial_dir)
                if trial_dir in finished:
                    assert record is not None and record.status == "done", f"rep {repetition}: a record lost"
            if trial_dir / "metrics.jsonl" not in damaged:
                read_metrics(trial_dir)
            if trial_dir in finished and not {trial_dir / "record.json", trial_dir / "metrics.jsonl"} & set(damaged):
                assert fingerprint(trial_dir) == finished[trial_dir], f"rep {repetition}: a finished trial changed"
            elif trial_dir not in finished and not {trial_dir / "record.json"} & set(damaged):
                record = read_record(trial_dir)
                if record is not None and record.status == "done":
                    finished[trial_dir] = fingerprint(trial_dir)

        path = corrupt(kind, trial_dirs, rng)
        if path is not None:
            damaged[path] = path.read_bytes()
            if kind in pending:
                pending.remove(kind)
    assert not pending, f"never found a file to damage for {pending}"

    final = start_runner(suite, results, log)
    assert final.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert not engines(results)
    for trial_dir in trial_dirs:
        assert read_record(trial_dir).status == "done"
        if trial_dir in finished:  # rebuilt from its checkpoint when damaged, never trained again
            assert fingerprint(trial_dir) == finished[trial_dir]

    # And the results are what one uninterrupted run of each trial gives.
    for config, trial_dir in zip(trials, trial_dirs, strict=True):
        straight = tmp_path / "straight" / config.dirname
        run_trial(config, straight)
        assert fingerprint(trial_dir)[1] == fingerprint(straight)[1], config.dirname
        a = torch.load(trial_dir / "last.pt", weights_only=True)["model"]
        b = torch.load(straight / "last.pt", weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), config.dirname
