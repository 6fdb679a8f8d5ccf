"""The trial record, atomic writes, and loading a results tree into a DataFrame.

Each trial directory holds `config.yaml` (the resolved TrialConfig), `metrics.jsonl` (one line per epoch),
`record.json` (the summary below) and `last.pt` (everything resume needs). Reports read records only.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import statistics
import subprocess
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

import mixbench

Status = Literal["pending", "running", "done", "failed", "interrupted"]


class TrialRecord(BaseModel):
    """One self-describing summary per trial (the lm-eval result-schema idea: config, versions, seeds, git)."""

    model_config = ConfigDict(extra="allow")

    trial_id: str
    suite: str
    dataset: str
    backbone: str
    method: str
    method_label: str
    method_version: int
    hparams: dict[str, Any]
    seed: int
    status: Status
    reason: str | None = None  # why it failed or stopped
    epochs: int
    epochs_done: int = 0
    headline: str = "model"  # which evaluated model the top1/top5 fields describe
    top1: float | None = None  # last epoch
    top5: float | None = None
    top1_best: float | None = None
    top1_best_epoch: int | None = None
    top1_median_last_n: float | None = None  # median over the last `last_n` epochs (N values, see claims)
    top5_best: float | None = None
    top5_median_last_n: float | None = None
    last_n: int = 10
    models: dict[str, dict[str, float | None]] = {}  # every evaluated model's last/best/median top-1
    param_count: int | None = None  # backbone parameters (the method's own, e.g. AutoMix's Mix Block, not included)
    images_per_sec: float | None = None  # training throughput, all devices together
    time_total_s: float = 0.0
    time_per_epoch_s: float | None = None
    peak_memory_mb: float | None = None  # CUDA max allocated on GPU, max RSS on CPU
    device: str = "cpu"
    gpu_name: str | None = None
    world_size: int = 1
    # How busy the machine was: a trial's cost is only comparable when nothing else competed for its cores.
    threads: int | None = None  # torch intra-op threads it trained with (MIXBENCH_THREADS / --threads)
    cpu_count: int | None = None  # the machine's cores
    load_avg_start: float | None = None  # 1-minute load average when training began (the latest session)
    load_avg_end: float | None = None  # ... and at the latest epoch's end
    versions: dict[str, str | None] = {}
    git_hash: str | None = None
    hostname: str = ""
    started_at: str | None = None
    updated_at: str | None = None
    config: dict[str, Any] = {}
    evaluation: dict[str, dict[str, Any]] = {}  # per model: calibration, corruption, occlusion, FGSM (evaluate.py)
    time_eval_s: float | None = None  # seconds spent in that evaluation, apart from time_total_s


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from the group on a shared filesystem
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DamagedFile(ValueError):
    """A trial's file that cannot be read (a disk error, a hand edit, a copy cut short): one line naming it and
    the fix."""


# What repairs a damaged record or metrics file: the engine rebuilds both from the checkpoint, never retraining.
REPAIR = ("fix: run the suite again (with --retry-failed if the trial failed): a finished trial's record and "
          "metrics are rebuilt from its checkpoint, an unfinished one resumes")


def write_record(trial_dir: Path, record: TrialRecord) -> None:
    atomic_write_text(trial_dir / "record.json", record.model_dump_json(indent=2) + "\n")


def read_record(trial_dir: Path) -> TrialRecord | None:
    """The trial's record; None before it has one. Raises DamagedFile when it cannot be read."""
    path = trial_dir / "record.json"
    if not path.is_file():
        return None
    try:
        return TrialRecord.model_validate_json(path.read_bytes())
    except (ValueError, OSError) as err:  # pydantic's ValidationError is a ValueError
        raise DamagedFile(f"{path}: unreadable record ({_first_line(err)}); {REPAIR}") from None


def try_read_record(trial_dir: Path) -> tuple[TrialRecord | None, DamagedFile | None]:
    """(record, None), or (None, the damage) where reading it failed: for views that must go on."""
    try:
        return read_record(trial_dir), None
    except DamagedFile as err:
        return None, err


def write_metrics(trial_dir: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(trial_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def read_metrics(trial_dir: Path) -> list[dict[str, Any]]:
    """One dict per finished epoch. Raises DamagedFile naming the first line that is not a JSON object."""
    path = trial_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise DamagedFile(f"{path}: line {number} is not JSON ({_first_line(err)}); {REPAIR}") from None
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            raise DamagedFile(f"{path}: line {number} is not an epoch's metrics (no integer epoch); {REPAIR}")
        rows.append(row)
    return rows


def _first_line(err: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(err, ValidationError) and err.errors():
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"]))
        return f"{where}: {first['msg']}" if where else first["msg"]
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def write_config(trial_dir: Path, config: dict[str, Any]) -> None:
    atomic_write_text(trial_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))


def machine_load() -> float | None:
    """The machine's 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def setting_order(key: Any) -> Any:
    """Sort key for settings and their labels that reads the numbers in names: fmnist_50 before fmnist_250 and
    fmnist_500 (a plain string sort puts 250 first). Tuples are ordered part by part; numbers stay numbers."""
    if isinstance(key, tuple):
        return tuple(setting_order(part) for part in key)
    if isinstance(key, str):  # text and digits alternate, so parts at the same place compare as the same type
        return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", key)))
    return key


def groups_in_order(frame: Any, columns: str | list[str]) -> list[tuple[Any, Any]]:
    """`frame.groupby(columns)` as a list, its groups in `setting_order`."""
    return sorted(frame.groupby(columns, sort=False), key=lambda group: setting_order(group[0]))


def under_contention(record: TrialRecord) -> bool:
    """Whether the machine ran more than its cores' worth of work while the trial trained: its timings are
    then inflated by other processes and not comparable with a quiet machine's."""
    loads = [v for v in (record.load_avg_start, record.load_avg_end) if v is not None]
    return bool(record.cpu_count and loads and max(loads) > record.cpu_count)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_hash() -> str | None:
    """The commit of the mixbench checkout, '+dirty' when it has uncommitted changes; None outside git."""
    root = Path(mixbench.__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    import timm
    import torch

    return {
        "versions": {
            "mixbench": mixbench.__version__,
            "torch": torch.__version__,
            "timm": timm.__version__,
            "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "python": platform.python_version(),
        },
        "git_hash": git_hash(),
        "hostname": socket.gethostname(),
    }


def summarize(history: list[dict[str, Any]], key: str, last_n: int) -> dict[str, float | int | None]:
    """Last, best (with its epoch) and median of the last `last_n` epochs of one metric."""
    values = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
    if not values:
        return {"last": None, "best": None, "best_epoch": None, "median_last_n": None}
    best_epoch, best = max(values, key=lambda item: item[1])
    return {
        "last": values[-1][1],
        "best": best,
        "best_epoch": best_epoch,
        "median_last_n": statistics.median(v for _, v in values[-last_n:]),
    }


def trial_dirs(results: Path) -> list[Path]:
    """Every trial directory below `results` (a suite's folder or a whole results tree)."""
    return sorted(p.parent for p in results.rglob("config.yaml"))


def pending_record(config: dict[str, Any]) -> TrialRecord:
    from mixbench.suite import TrialConfig

    trial = TrialConfig.model_validate(config)
    return TrialRecord(
        trial_id=trial.trial_id, suite=trial.suite, dataset=trial.dataset.key, backbone=trial.backbone.name,
        method=trial.method, method_label=trial.method_label, method_version=trial.method_version,
        hparams=trial.hparams, seed=trial.seed, status="pending", epochs=trial.recipe.epochs,
        last_n=trial.recipe.last_n, config=trial.model_dump(mode="json"),
    )


# Not settings of a trial's result: the seed (what a row averages over), where it ran and where its data lives.
_NOT_A_SETTING = ("seed", "suite", "resources", "method_label", "dataset.root")


def _settings(record: TrialRecord) -> dict[str, Any]:
    """The record's resolved configuration as flat dotted keys, less what does not change its result."""

    def flatten(prefix: str, value: Any) -> dict[str, Any]:
        if isinstance(value, dict) and value:
            return {k: v for key, item in value.items() for k, v in flatten(f"{prefix}{key}.", item).items()}
        return {prefix[:-1]: value}

    flat = flatten("", {**record.config, "method_version": record.method_version})
    return {k: v for k, v in flat.items() if not any(k == n or k.startswith(f"{n}.") for n in _NOT_A_SETTING)}


def variant_labels(records: list[TrialRecord]) -> list[str]:
    """The label each record's table row goes under: its method label, and where trials of one dataset, budget,
    backbone and label differ in more than the seed (a hyper-parameter edited between runs, two suites in one
    folder), what differs, e.g. `cutmix (alpha=1.0)` and `cutmix (alpha=0.2)`. Seeds of one configuration pool;
    two configurations never do."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r.dataset, r.epochs, r.backbone, r.method_label), []).append(i)
    labels = [r.method_label for r in records]
    for members in groups.values():
        settings = {i: _settings(records[i]) for i in members}
        keys = sorted({k for s in settings.values() for k in s})
        differing = [k for k in keys if len({json.dumps(s.get(k), sort_keys=True) for s in settings.values()}) > 1]
        for i in members:
            shown = ", ".join(f"{_short_key(k)}={_short_value(settings[i].get(k))}" for k in differing)
            if shown:
                labels[i] = f"{records[i].method_label} ({shown})"
    return labels


def _short_key(key: str) -> str:
    return key.removeprefix("hparams.").removeprefix("recipe.")


def _short_value(value: Any) -> str:
    return "unset" if value is None else value if isinstance(value, str) else json.dumps(value)


def label_variants(records: list[TrialRecord]) -> list[TrialRecord]:
    """The records with `method_label` set to their variant label (see variant_labels), for tables that group by
    the label."""
    return [r if label == r.method_label else r.model_copy(update={"method_label": label})
            for r, label in zip(records, variant_labels(records), strict=True)]


def records_frame(records: Iterable[TrialRecord]):
    """One flat row per record, from its own `model_dump()`: every declared and extra field, the versions by
    package name, each evaluated model other than the headline as `<key>_<model>`, the hyper-parameters as
    `hparams.<name>` (lists and dicts as text), and `variant`, the label its table row goes under (see
    variant_labels); the resolved config is left out (it is in config.yaml)."""
    import pandas as pd

    records = list(records)
    rows = []
    for record, label in zip(records, variant_labels(records), strict=True):
        row = record.model_dump(exclude={"config"})
        models, versions, hparams = row.pop("models"), row.pop("versions"), row.pop("hparams")
        evaluation = row.pop("evaluation") or {}
        row.update(versions)
        # mixbench evaluate's scalars of the headline model (its nested tables stay in record.json)
        row.update({f"eval_{k}": v for k, v in evaluation.get(record.headline, {}).items()
                    if not isinstance(v, (dict, list))})
        for name, values in models.items():
            if name != record.headline:
                row.update({f"{key}_{name}": value for key, value in values.items()})
        row.update({f"hparams.{k}": v if not isinstance(v, (list, dict)) else str(v) for k, v in hparams.items()})
        row["variant"] = label
        rows.append(row)
    return pd.DataFrame(rows)
