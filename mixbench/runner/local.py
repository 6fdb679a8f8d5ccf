"""The local executor: a pool of GPU slots (or CPU jobs), one subprocess per trial, a live view.

Each trial runs as `python -m mixbench.engine TRIAL_DIR` pinned to its GPUs with CUDA_VISIBLE_DEVICES
(several GPUs: `torch.distributed.run` starts one process per GPU, NCCL; without GPUs, `gpus_per_trial: N`
still runs N processes, with gloo and the CPU cores shared between them). Finished trials are skipped, interrupted
ones resume from their checkpoint, failed ones are recorded with their reason and skipped on the next run
unless `retry_failed`. Ctrl-C stops every trial with SIGTERM: each keeps its last checkpoint. A trial stopped
after its training (in its evaluation) stays done, and the next run finishes its evaluation without training it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mixbench.results import DamagedFile, TrialRecord, read_metrics, try_read_record, write_config
from mixbench.suite import TrialConfig


@dataclass
class Job:
    config: TrialConfig
    trial_dir: Path
    slot: list[int] | None = None  # GPU ids, None on CPU
    process: subprocess.Popen | None = None
    state: str = "queued"  # queued, running, done, failed, interrupted, skipped
    note: str = ""
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.trial_dir / "log.txt"


def _stop_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the runner dies, even by SIGKILL, so no trial is orphaned."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def visible_gpus() -> list[int]:
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trial_command(trial_dir: Path, nprocs: int) -> list[str]:
    if nprocs == 1:
        return [sys.executable, "-m", "mixbench.engine", str(trial_dir)]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nprocs}",
            "--master-addr=127.0.0.1", f"--master-port={free_port()}", "-m", "mixbench.engine", str(trial_dir)]


def plan(trials: list[TrialConfig], suite_dir: Path, retry_failed: bool) -> list[Job]:
    """A job per trial; those already done (or failed, unless retried) are marked skipped.

    A trial whose record or metrics cannot be read runs again: the engine rebuilds both from its checkpoint
    (a finished trial is not retrained) or resumes it."""
    jobs = []
    for config in trials:
        job = Job(config, suite_dir / config.dirname)
        record, damage = try_read_record(job.trial_dir)
        if damage is None and record is not None and record.status == "done":
            try:
                read_metrics(job.trial_dir)
            except DamagedFile as err:
                damage = err
        if damage is not None:
            job.note = f"repairing: {damage}".split("; fix:")[0]
        elif record is not None and record.status == "done" and evaluation_cut_short(job.trial_dir, record):
            job.note = "finishing its evaluation"  # the engine does not train a finished trial again
        elif record is not None and record.status == "done":
            job.state, job.note = "skipped", "done"
        elif record is not None and record.status == "failed" and not retry_failed:
            job.state, job.note = "skipped", f"failed earlier: {record.reason} (--retry-failed to rerun)"
        jobs.append(job)
    return jobs


def evaluation_cut_short(trial_dir: Path, record: TrialRecord) -> bool:
    """Trained to the end but stopped in its evaluation: begun (robustness.json is written before the first part)
    and never summarised into the record. Records from before the evaluate stage have neither and stay done."""
    from mixbench.evaluate import ROBUSTNESS

    return not record.evaluation and (trial_dir / ROBUSTNESS).is_file()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        why = f"killed by {signal.Signals(-returncode).name}"
        return why + " (out of memory?)" if -returncode == signal.SIGKILL else why
    return "stopped by SIGTERM or SIGINT" if returncode == 130 else f"exit code {returncode}"


def _finish(job: Job, returncode: int) -> None:
    """Settle the job's state from its exit code and record; write a failed record if the trial could not."""
    from mixbench.engine import EXIT_BUSY, failed_record, trial_is_locked

    # torch.distributed.run exits 1 whatever its workers' codes, so a busy DDP trial is told by its lock.
    if returncode == EXIT_BUSY or (returncode != 0 and trial_is_locked(job.trial_dir)):
        job.state, job.note = "skipped", "running in another process"
        return
    record, _ = try_read_record(job.trial_dir)
    if record is not None and record.status == "done":  # trained to the end, whatever stopped it after that
        job.state = "done"
        if returncode != 0:
            job.note = f"{_exit_reason(returncode)} in its evaluation; it finishes on the next run"
        elif job.note.startswith("repairing"):
            job.note = "repaired from its checkpoint"
        elif job.note.startswith("finishing"):
            job.note = "evaluated"
        return
    if record is not None and record.status == "interrupted" and returncode in (130, -signal.SIGTERM):
        job.state, job.note = "interrupted", "resumes on the next run"
        return
    if record is not None and record.status == "failed":
        job.state, job.note = "failed", record.reason or ""
        return
    reason = f"{_exit_reason(returncode)}; last log lines: {_tail(job.log)}"
    failed_record(job.config, job.trial_dir, reason)
    job.state, job.note = "failed", reason


class LocalRunner:
    """Runs jobs on GPU slots (one trial per `gpus_per_trial` free GPUs) or on `jobs` CPU workers."""

    def __init__(self, gpus: list[int] | None = None, jobs: int | None = None, threads: int | None = None):
        self.gpus = visible_gpus() if gpus is None else gpus
        self.cpu_jobs = max(1, jobs or 1)
        self.threads = threads  # per trial on CPU; None: MIXBENCH_THREADS, else the cores shared among the jobs

    def _env(self, job: Job) -> dict[str, str]:
        env = dict(os.environ)
        if job.slot:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, job.slot))
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU trial must not grab a GPU it was not given
            cores = os.cpu_count() or 1
            per_job = max(1, cores // self.cpu_jobs // job.config.resources.gpus_per_trial)
            if self.threads:
                env["MIXBENCH_THREADS"] = env["OMP_NUM_THREADS"] = str(self.threads)
            env.setdefault("MIXBENCH_THREADS", str(per_job))
            env.setdefault("OMP_NUM_THREADS", env["MIXBENCH_THREADS"])
        return env

    def run(self, jobs: list[Job], on_update: Callable[[list[Job]], None] | None = None) -> list[Job]:
        free = list(self.gpus)
        queue = [j for j in jobs if j.state == "queued"]
        running: list[Job] = []
        try:
            while queue or running:
                for job in list(queue):
                    need = job.config.resources.gpus_per_trial
                    if self.gpus:
                        if need > len(self.gpus):
                            job.state = "failed"
                            job.note = f"needs {need} GPUs; only {len(self.gpus)} visible"
                            queue.remove(job)
                            continue
                        if len(free) < need:
                            continue
                        job.slot, free = free[:need], free[need:]
                    elif len(running) >= self.cpu_jobs:
                        break
                    self._start(job)
                    queue.remove(job)
                    running.append(job)
                for job in list(running):
                    code = job.process.poll() if job.process else 0
                    if code is None:
                        continue
                    job.log_handle.close()
                    _finish(job, code)
                    running.remove(job)
                    free += job.slot or []
                if on_update:
                    on_update(jobs)
                time.sleep(0.3)
        except KeyboardInterrupt:
            for job in running:
                if job.process and job.process.poll() is None:
                    job.process.send_signal(signal.SIGTERM)
            for job in running:
                if job.process:
                    try:
                        job.process.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        job.process.kill()
                    record, _ = try_read_record(job.trial_dir)
                    if record is not None and record.status == "done":
                        job.state, job.note = "done", "stopped by Ctrl-C in its evaluation; it finishes on the next run"
                    else:
                        job.state, job.note = "interrupted", "stopped by Ctrl-C; resumes on the next run"
            raise
        return jobs

    def _start(self, job: Job) -> None:
        job.trial_dir.mkdir(parents=True, exist_ok=True)
        write_config(job.trial_dir, job.config.model_dump(mode="json"))
        job.log_handle = open(job.log, "a")  # noqa: SIM115 (closed when the process ends)
        nprocs = job.config.resources.gpus_per_trial
        job.process = subprocess.Popen(trial_command(job.trial_dir, nprocs), env=self._env(job),
                                       stdout=job.log_handle, stderr=subprocess.STDOUT,
                                       start_new_session=True,  # Ctrl-C reaches the runner, which stops trials
                                       preexec_fn=_stop_with_parent)
        job.state = "running"


def job_record(job: Job) -> TrialRecord | None:
    return try_read_record(job.trial_dir)[0]
