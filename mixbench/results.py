"""The trial record, atomic writes, and loading a results tree into a DataFrame.

Each trial directory holds `config.yaml` (the resolved TrialConfig), `metrics.jsonl` (one line per epoch),
`record.json` (the summary below) and `last.pt` (everything resume needs). Reports read records only.
"""

from __future__ import annotations

import json
import os
import platform
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
    versions: dict[str, str | None] = {}
    git_hash: str | None = None
    hostname: str = ""
    started_at: str | None = None
    updated_at: str | None = None
    config: dict[str, Any] = {}
    evaluation: dict[str, dict[str, Any]] = {}  # per model: calibration, corruption, occlusion, FGSM (evaluate.py)
    time_eval_s: float | None = None  # seconds spent in that evaluation, apart from time_total_s


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(trial_dir: Path, record: TrialRecord) -> None:
    atomic_write_text(trial_dir / "record.json", record.model_dump_json(indent=2) + "\n")


def read_record(trial_dir: Path) -> TrialRecord | None:
    path = trial_dir / "record.json"
    if not path.is_file():
        return None
    return TrialRecord.model_validate_json(path.read_text())


def write_metrics(trial_dir: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(trial_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def read_metrics(trial_dir: Path) -> list[dict[str, Any]]:
    path = trial_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_config(trial_dir: Path, config: dict[str, Any]) -> None:
    atomic_write_text(trial_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))


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


def records_frame(records: Iterable[TrialRecord]):
    """One flat row per record, from its own `model_dump()`: every declared and extra field, the versions by
    package name, each evaluated model other than the headline as `<key>_<model>`, the hyper-parameters as
    `hparams.<name>` (lists and dicts as text); the resolved config is left out (it is in config.yaml)."""
    import pandas as pd

    rows = []
    for record in records:
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
        rows.append(row)
    return pd.DataFrame(rows)
