"""The Slurm executor: a suite's trials as submitit job arrays, one array task per trial (N tasks for a DDP trial).

Submission. The trials to run (as `local.plan` decides: not done, not failed unless retried) are grouped by their
Slurm request and each group goes out as one job array; each array task runs `SlurmTrial` on one trial
directory. The job id is stored in the trial directory (`slurm.json`), so a second submission of the same suite
skips a trial whose job is still queued or running, as well as a finished one; the engine's lock per trial
directory covers the remaining race (two submissions at the same moment): the second job finds the trial busy
and leaves it alone.

Options. `resources.slurm` in the suite holds submitit's SlurmExecutor parameters (sbatch names: partition,
account, time, mem, qos, constraint, setup, additional_parameters, ...; or submitit's generic names timeout_min,
mem_gb, ...), plus `max_num_timeout` (how many time-limit requeues are allowed; default 50). The command line's
--partition, --account, --time and --array-parallelism win over the suite. `gpus_per_node: 0` asks for no GPUs
(CPU nodes: the N processes of a DDP trial then use gloo).

Preemption and time limits. Slurm sends USR2 `signal_delay_s` (120) seconds before the time limit, and
`scancel --signal=USR2` does the same at preemption. submitit's own handler would checkpoint and requeue at once,
in the middle of whatever the trial was doing; `PreemptionSignal` defers it: the engine stops at the next step
every process agrees on (its next check point, at most `engine.CHECK_EVERY` steps on), writes a checkpoint of
that step, and then submitit's handler runs: it calls
`SlurmTrial.checkpoint` (which resubmits the same call) and requeues the job, which resumes from that checkpoint,
so the final record equals an uninterrupted run. SIGTERM alone (scancel, or preemption without USR2) is
ignored by submitit's handler and ends in SIGKILL: the trial then resumes from its last checkpoint when the suite
is submitted again.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mixbench.results import atomic_write_text, now, try_read_record, write_config
from mixbench.runner.local import Job, evaluation_cut_short
from mixbench.suite import SuiteError, TrialConfig

SUBMISSION = "slurm.json"  # in the trial directory: the job that runs (or ran) the trial
DEFAULT_TIME_MIN = 240  # a time limit is needed (submitit's default is 5 min); longer trials requeue
DEFAULT_MAX_REQUEUES = 50  # submitit's max_num_timeout: requeues after hitting the time limit
SIGNAL_DELAY_S = 120  # USR2 this long before the time limit: time to finish a step and write a checkpoint

# squeue states of a job Slurm still holds, as mixbench reports them.
ACTIVE_STATES = {
    "PENDING": "queued", "REQUEUED": "queued", "REQUEUE_HOLD": "queued", "REQUEUE_FED": "queued",
    "RESV_DEL_HOLD": "queued", "CONFIGURING": "running", "RUNNING": "running", "COMPLETING": "running",
    "SUSPENDED": "running", "STOPPED": "running", "RESIZING": "running", "SIGNALING": "running",
    "STAGE_OUT": "running",
}


class SlurmError(RuntimeError):
    """Slurm cannot be reached or refused a request; the message says which command and why."""


# ---- what each task runs ---------------------------------------------------------------------------------


class PreemptionSignal:
    """Slurm's warning signal (USR2 by default, as submitit asks for it), deferred to a step boundary.

    `install` keeps submitit's handler aside and only notes the signal; the engine polls `requested` after every
    step; `hand_over` then runs submitit's handler, which checkpoints (see `SlurmTrial.checkpoint`), requeues the
    job and exits on rank 0, and returns on the other ranks.
    """

    def __init__(self) -> None:
        # submitit reads the same variable to choose the signal it asks sbatch for (--signal=USR2@delay).
        self.signum = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))
        self.submitit_handler: Any = None
        self.received = False

    def install(self) -> None:
        self.submitit_handler = signal.getsignal(self.signum)
        signal.signal(self.signum, self._note)

    def _note(self, signum, frame) -> None:
        self.received = True

    def requested(self) -> bool:
        return self.received

    def uninstall(self) -> None:
        if self.submitit_handler is not None:
            signal.signal(self.signum, self.submitit_handler)

    def hand_over(self) -> None:
        self.uninstall()
        if callable(self.submitit_handler):
            self.submitit_handler(self.signum, None)


def export_torch_distributed_env() -> None:
    """torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) for this task of a trial
    run as several tasks, from submitit's public helper; nothing for a one-task trial (no process group).

    The port is drawn from the job id: the same in all tasks of a trial, kept by a requeue, and different
    between array tasks. Every GPU stays visible; each process picks its own (`distributed.local_device_index`).
    """
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    if JobEnvironment().num_tasks > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


class SlurmTrial:
    """One task of one trial under Slurm: joins the trial's process group and runs the engine on the trial dir.

    Checkpointable in submitit's sense: `checkpoint` returns the same call, so a preempted or timed-out job is
    requeued with it and the engine resumes from the checkpoint it wrote when it stopped.
    """

    def __call__(self, trial_dir: str) -> str:

        from mixbench import distributed as dist
        from mixbench.engine import Preempted, TrialBusy, run_trial

        path = Path(trial_dir)
        record = try_read_record(path)[0]  # a damaged record: the engine rebuilds it
        if record is not None and record.status == "done":
            return "done earlier"  # a second job for a finished trial: never train it again
        export_torch_distributed_env()
        if os.environ.get("SLURM_CPUS_PER_TASK"):
            os.environ.setdefault("MIXBENCH_THREADS", os.environ["SLURM_CPUS_PER_TASK"])
        config = yaml.safe_load((path / "config.yaml").read_text())
        preemption = PreemptionSignal()
        preemption.install()
        finished = False
        try:
            dist.init_from_env()
            status = run_trial(config, path, stop_requested=preemption.requested).status
            finished = True
            return status
        except TrialBusy as err:
            return f"skipped: {err}"
        except Preempted:
            dist.shutdown(finished=True)  # every process stopped at the same step (Trial.preempt)
            preemption.hand_over()  # rank 0: checkpoint() and requeue, then exits; the other ranks return
            return "preempted"
        finally:
            dist.shutdown(finished)
            preemption.uninstall()

    def checkpoint(self, trial_dir: str):
        """Called by submitit's handler on preemption or timeout: resubmit the same call (the state is on disk)."""
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmTrial(), trial_dir)


# ---- options ---------------------------------------------------------------------------------------------


@dataclass
class SlurmOptions:
    """The command line's Slurm options; None leaves the suite's (or the default) value."""

    partition: str | None = None
    account: str | None = None
    time: str | None = None
    array_parallelism: int | None = None


def slurm_minutes(value: str | int) -> int:
    """A Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in whole minutes, rounded up."""
    if isinstance(value, int) and value > 0:
        return value
    text = str(value).strip()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not match:
        raise SuiteError(f"time {value!r}: not a Slurm time limit; fix: write minutes (90), HH:MM:SS (1:30:00) "
                         f"or D-HH:MM:SS (2-00:00:00)")
    days, first, second, third = (int(g) if g else None for g in match.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + first * 3600 + (second or 0) * 60 + (third or 0)
    elif third is not None:  # HH:MM:SS
        seconds = first * 3600 + second * 60 + third
    elif second is not None:  # MM:SS, as Slurm reads two fields
        seconds = first * 60 + second
    else:
        seconds = first * 60
    if seconds <= 0:
        raise SuiteError(f"time {value!r}: the time limit must be positive")
    return math.ceil(seconds / 60)


def executor_parameters(config: TrialConfig, options: SlurmOptions) -> tuple[dict[str, Any], int]:
    """submitit SlurmExecutor parameters for one trial, and its max_num_timeout.

    Defaults, then the suite's `resources.slurm`, then the command line.
    """
    resources = config.resources
    tasks = resources.gpus_per_trial
    params: dict[str, Any] = {
        "job_name": f"mixbench-{config.suite}",
        "time": DEFAULT_TIME_MIN,
        "nodes": 1,
        "ntasks_per_node": tasks,  # one process per GPU of the trial
        "gpus_per_node": tasks,
        "signal_delay_s": SIGNAL_DELAY_S,
        "stderr_to_stdout": True,
    }
    if resources.cpus_per_trial:
        params["cpus_per_task"] = max(1, resources.cpus_per_trial // tasks)
    if tasks > 1:
        params["srun_args"] = ["--kill-on-bad-exit=1"]  # a failed rank must not leave the others waiting
    user = dict(resources.slurm)
    max_requeues = int(user.pop("max_num_timeout", DEFAULT_MAX_REQUEUES))
    user = {GENERIC_NAMES.get(k, k): v for k, v in user.items()}
    if "mem" in user and not isinstance(user["mem"], str):
        user["mem"] = f"{user['mem']}GB"
    additional = {"requeue": True, **user.pop("additional_parameters", {})}  # requeue: allow scontrol requeue
    params.update(user)
    params["additional_parameters"] = additional
    for key, value in (("partition", options.partition), ("account", options.account), ("time", options.time),
                       ("array_parallelism", options.array_parallelism)):
        if value is not None:
            params[key] = value
    params["time"] = slurm_minutes(params["time"])  # submitit computes the timeout from minutes
    if params.get("gpus_per_node") == 0:
        del params["gpus_per_node"]  # CPU nodes
    if params["ntasks_per_node"] * params["nodes"] != tasks:
        params["ntasks_per_node"] = max(1, tasks // params["nodes"])
        if params["ntasks_per_node"] * params["nodes"] != tasks:
            raise SuiteError(f"resources.slurm.nodes {params['nodes']}: gpus_per_trial {tasks} is not a multiple "
                             f"of it; fix: choose nodes dividing {tasks}")
    return params, max_requeues


# submitit's generic parameter names (AutoExecutor's, documented there) and the SlurmExecutor names they stand for.
GENERIC_NAMES = {"name": "job_name", "timeout_min": "time", "mem_gb": "mem", "tasks_per_node": "ntasks_per_node"}


def slurm_parameter_names() -> list[str]:
    """The parameters SlurmExecutor.update_parameters accepts.

    submitit has no public list of them; this reads the one its own validation uses, which is why pyproject
    pins submitit to the versions that have it (>=1.5,<1.6; tests/test_slurm.py checks it).
    """
    from submitit.slurm.slurm import _get_default_parameters

    return sorted(_get_default_parameters())


def _check_parameters(params: dict[str, Any]) -> None:
    allowed = slurm_parameter_names()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=1)
            hints.append(f"{key}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise SuiteError(f"resources.slurm: unknown option {', '.join(hints)}; fix: use submitit's SlurmExecutor "
                         f"parameters ({', '.join(allowed)}) or its generic names (timeout_min, mem_gb, "
                         f"cpus_per_task, gpus_per_node, tasks_per_node, nodes, name)")


# ---- the scheduler ---------------------------------------------------------------------------------------


@dataclass
class Submission:
    """What `slurm.json` in a trial directory holds."""

    job_id: str  # ARRAYID_INDEX for an array task
    submitted_at: str
    log: str  # task 0's stdout and stderr
    tasks: int = 1

    @staticmethod
    def read(trial_dir: Path) -> Submission | None:
        path = trial_dir / SUBMISSION
        if not path.is_file():
            return None
        return Submission(**json.loads(path.read_text()))

    def write(self, trial_dir: Path) -> None:
        atomic_write_text(trial_dir / SUBMISSION, json.dumps(self.__dict__, indent=2) + "\n")


@dataclass
class JobState:
    state: str  # squeue's, e.g. PENDING, RUNNING
    reason: str

    @property
    def summary(self) -> str:
        """queued or running."""
        return ACTIVE_STATES.get(self.state, "running")


def slurm_available() -> bool:
    return shutil.which("squeue") is not None and shutil.which("sbatch") is not None


def _slurm(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmError(f"{args[0]} failed: {err}") from None
    if done.returncode != 0:
        raise SlurmError(f"{' '.join(args[:2])} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def active_jobs() -> dict[str, JobState]:
    """The user's jobs Slurm still holds (queued or running), by job id; array tasks one by one (ARRAY_INDEX)."""
    out = _slurm(["squeue", "--me", "--noheader", "--array", "--format=%i|%T|%r"])
    jobs = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            jobs[parts[0]] = JobState(state=parts[1], reason=parts[2])
    return jobs


# ---- submit, status, cancel --------------------------------------------------------------------------------


def submit(jobs: list[Job], suite_dir: Path, options: SlurmOptions) -> list[Job]:
    """Submit the queued jobs as job arrays; those already queued, running or finished are marked skipped.

    Each submitted job's state becomes "queued" with its Slurm job id in the note and in the trial's slurm.json.
    """
    import submitit

    from mixbench.engine import trial_is_locked

    queued = [j for j in jobs if j.state == "queued"]
    stored = {j.trial_dir: Submission.read(j.trial_dir) for j in queued}
    live = active_jobs() if any(stored.values()) else {}
    todo = []
    for job in queued:
        submission = stored[job.trial_dir]
        state = live.get(submission.job_id) if submission else None
        if state is not None:
            job.state, job.note = "skipped", f"{state.summary} as job {submission.job_id}"
        elif trial_is_locked(job.trial_dir):
            job.state, job.note = "skipped", "running in another process"
        else:
            todo.append(job)
    groups: dict[str, list[tuple[Job, dict[str, Any], int]]] = {}
    for job in todo:
        params, max_requeues = executor_parameters(job.config, options)
        _check_parameters(params)
        key = json.dumps([params, max_requeues], sort_keys=True, default=str)
        groups.setdefault(key, []).append((job, params, max_requeues))
    for members in groups.values():
        _, params, max_requeues = members[0]
        executor = submitit.SlurmExecutor(folder=suite_dir / "slurm" / "%j", max_num_timeout=max_requeues)
        executor.update_parameters(**params)
        submitted = []
        with executor.batch():
            for job, _, _ in members:
                job.trial_dir.mkdir(parents=True, exist_ok=True)
                write_config(job.trial_dir, job.config.model_dump(mode="json"))
                submitted.append(executor.submit(SlurmTrial(), str(job.trial_dir)))
        for (job, _, _), slurm_job in zip(members, submitted, strict=True):
            Submission(job_id=slurm_job.job_id, submitted_at=now(), log=str(slurm_job.paths.stdout),
                       tasks=params["ntasks_per_node"] * params["nodes"]).write(job.trial_dir)
            job.state, job.note = "queued", f"job {slurm_job.job_id}"
    return jobs


def suite_status(trials: list[TrialConfig], suite_dir: Path) -> list[Job]:
    """Every trial's state from its record and, for a submitted one, the scheduler.

    States: done, failed, queued, running, interrupted (resumes when run again), stopped (its job ended while the
    trial was running: cancelled or killed; it resumes from its last checkpoint when run again), pending (never
    started).
    """
    from mixbench.engine import trial_is_locked

    rows = [Job(config, suite_dir / config.dirname) for config in trials]
    stored = {row.trial_dir: Submission.read(row.trial_dir) for row in rows}
    live: dict[str, JobState] = {}
    unreachable = ""
    if any(stored.values()):
        try:
            live = active_jobs()
        except SlurmError as err:
            unreachable = f"; scheduler not reachable ({err})"
    for row in rows:
        record, damage = try_read_record(row.trial_dir)
        if damage is not None:
            row.state, row.note = "damaged", str(damage)
            continue
        submission = stored[row.trial_dir]
        job_state = live.get(submission.job_id) if submission else None
        job = f"job {submission.job_id}" if submission else ""
        # A failed record written by this job (not by an earlier attempt) is final, even while the job ends.
        failed_by_this_job = (record is not None and record.status == "failed" and submission is not None
                              and (record.updated_at or "") >= submission.submitted_at)
        if record is not None and record.status == "done":
            row.state, row.note = "done", job
            if evaluation_cut_short(row.trial_dir, record):
                row.note = f"{job} its evaluation was cut short; it finishes when run again".strip()
        elif job_state is not None and not failed_by_this_job:
            row.state = job_state.summary
            why = f", {job_state.reason}" if job_state.reason not in ("None", "") else ""
            row.note = f"{job} ({job_state.state.lower()}{why})"
        elif record is not None and record.status == "failed":
            row.state, row.note = "failed", record.reason or ""
        elif record is not None and record.status == "running":
            if trial_is_locked(row.trial_dir):
                row.state, row.note = "running", job or "running locally"
            else:
                row.state = "stopped"
                row.note = f"{job} ended while it ran; resumes from its last checkpoint when run again".strip()
        elif record is not None and record.status == "interrupted":
            row.state, row.note = "interrupted", f"{record.reason or ''}; resumes when run again"
        elif submission is not None:
            row.state, row.note = "stopped", f"{job} ended before the trial started; log: {submission.log}"
        else:
            row.state, row.note = "pending", "not run yet"
        row.note += unreachable if submission else ""
    return rows


def cancel(trials: list[TrialConfig], suite_dir: Path) -> list[tuple[TrialConfig, str]]:
    """scancel the queued and running jobs of the suite's trials; returns (trial, job id) for each."""
    stored = [(config, Submission.read(suite_dir / config.dirname)) for config in trials]
    stored = [(config, s) for config, s in stored if s is not None]
    if not stored:
        return []
    live = active_jobs()
    doomed = [(config, s.job_id) for config, s in stored if s.job_id in live]
    if doomed:
        _slurm(["scancel", *[job_id for _, job_id in doomed]])
    return doomed
