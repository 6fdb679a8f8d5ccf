"""The dry-run cost estimate: GPU-hours per trial and per suite, from a per-backbone cost model.

Per trial (see docs/cost_model.md for the model, its constants and what they are based on):

    train FLOPs = F(backbone, image size) × 3 × train images × epochs × method multiplier
    eval FLOPs  = F(backbone, image size) × val images × epochs × eval passes
    GPU-hours   = (train FLOPs + eval FLOPs) / effective GPU FLOP/s / 3600
    wall hours  = GPU-hours / gpus_per_trial               (linear DDP scaling assumed)

F is the forward FLOPs of one image, counted by `torch.utils.flop_counter.FlopCounterMode` on the meta device
(no memory, no time; a multiply-add counts 2), cached per backbone, head size and image size in
`<results>/.cache/flops.json`. ×3 is forward + backward. The effective FLOP/s is an assumption (an A100 at a
stated utilisation, `ASSUMED_GPU`). Where earlier records in the results folder measured the same dataset,
backbone, method, image size and precision on a GPU, their training images/s replace the model for the
training part (the `basis` column says which).
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from mixbench.suite import TrialConfig

# Effective throughput per GPU, in FLOP/s as FlopCounterMode counts them (2 per multiply-add).
# An A100-SXM4 peaks at 312 TFLOP/s dense bf16 and 156 TFLOP/s TF32. ~19 % of peak is what a well-fed
# ResNet-50 ImageNet training run reaches (NVIDIA's published ~2,500 img/s with AMP, ~1,250 img/s in
# TF32, at 24.5 GFLOP per image for forward + backward).
ASSUMED_GPU = "A100-SXM4 at ~19 % of peak"
EFFECTIVE_FLOPS = {"bf16": 60e12, "fp32": 30e12}

# Training cost of a step relative to vanilla (same backbone, same batch), and where the number comes from.
METHOD_MULTIPLIER: dict[str, tuple[float, str]] = {
    "vanilla": (1.0, "one forward + backward"),
    "mixup": (1.0, "mixing is elementwise; no measurable cost on GPU (openmixup ViT table)"),
    "cutmix": (1.0, "a box copy; no measurable cost on GPU (openmixup ViT table)"),
    "saliencymix": (1.05, "one saliency map per batch (REFERENCE.md §4: ~12 ms per 32×224 px batch)"),
    "puzzlemix": (2.0, "extra forward + input backward for the saliency, CPU graph cuts, transport "
                       "(×1.25-1.5 at 224 px, up to ×5 at 32 px: claims/README.md §7)"),
    "automix": (3.0, "EMA forward + input backward, two online passes, Mix Block "
                     "(×3.0 measured on CPU, REFERENCE.md §9; ×2.1-2.8 on GPU for ViTs)"),
}
UNKNOWN_METHOD_MULTIPLIER = 1.0
# Models evaluated every epoch (a forward over the val split each): AutoMix evaluates its EMA and online
# encoders, plus the two mix heads with eval_mix_heads.
EVAL_PASSES = {"automix": 2}


def method_multiplier(method: str) -> float:
    return METHOD_MULTIPLIER.get(method, (UNKNOWN_METHOD_MULTIPLIER, ""))[0]


def eval_passes(trial: TrialConfig) -> int:
    passes = EVAL_PASSES.get(trial.method, 1)
    if trial.method == "automix" and trial.hparams.get("eval_mix_heads"):
        passes += 2
    return passes


# ---- FLOPs of one forward pass ---------------------------------------------------------------------------


def _flops_key(name: str, kwargs: dict[str, Any], num_classes: int, in_chans: int, image_size: int) -> str:
    import timm
    import torch

    extra = json.dumps(kwargs, sort_keys=True, default=str)
    return (f"{name}|{extra}|classes={num_classes}|in_chans={in_chans}|{image_size}px|"
            f"torch={torch.__version__}|timm={timm.__version__}")


@cache
def _measure(name: str, kwargs_json: str, num_classes: int, in_chans: int, image_size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mixbench.models import create_backbone

    kwargs = json.loads(kwargs_json)
    for key in ("pretrained", "checkpoint_path"):  # FLOPs do not depend on the weights: never fetch or read any
        kwargs.pop(key, None)
    with torch.device("meta"):
        model = create_backbone(name, num_classes=num_classes, image_size=image_size, in_chans=in_chans, **kwargs)
    model.eval()
    x = torch.empty(1, in_chans, image_size, image_size, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def forward_flops(name: str, kwargs: dict[str, Any], num_classes: int, in_chans: int, image_size: int,
                  cache: FlopsCache | None = None) -> float:
    """FLOPs of one image's forward pass (meta device; raises what the model raises at this size)."""
    key = _flops_key(name, kwargs, num_classes, in_chans, image_size)
    if cache is not None and key in cache.values:
        return cache.values[key]
    flops = _measure(name, json.dumps(kwargs, sort_keys=True, default=str), num_classes, in_chans, image_size)
    if cache is not None:
        cache.put(key, flops)
    return flops


class FlopsCache:
    """A JSON file of forward FLOPs by backbone, head, channels, image size and torch/timm versions."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.values: dict[str, float] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.values = {}
        self.dirty = False

    def put(self, key: str, value: float) -> None:
        self.values[key] = value
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        from mixbench.results import atomic_write_text

        with contextlib.suppress(OSError):  # a read-only results folder only costs a recount next time
            atomic_write_text(self.path, json.dumps(self.values, indent=1, sort_keys=True) + "\n")
        self.dirty = False


def flops_cache(results_root: Path) -> FlopsCache:
    return FlopsCache(Path(results_root) / ".cache" / "flops.json")


# ---- measured throughput from earlier records ------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    images_per_sec_per_gpu: float
    records: int
    gpu: str


def _image_size(config: dict[str, Any], dataset: str) -> int | None:
    from mixbench.data import dataset_info

    size = (config.get("recipe") or {}).get("image_size")
    if size:
        return int(size)
    try:
        return dataset_info(dataset).image_size
    except ValueError:
        return None


def _measure_key(dataset: str, backbone: str, method: str, image_size: int | None, amp: bool) -> tuple:
    return dataset, backbone, method, image_size, bool(amp)


def _throughputs(results_root: Path, device: str) -> dict[tuple, list[tuple[float, str, bool]]]:
    """Training images/s per device of the records under `results_root` that ran on `device`, by dataset,
    backbone, method, image size and precision: (images/s, where, measured under contention) each."""
    from mixbench.results import read_record, trial_dirs, under_contention

    found: dict[tuple, list[tuple[float, str, bool]]] = {}
    root = Path(results_root)
    if not root.is_dir():
        return {}
    for trial_dir in trial_dirs(root):
        try:
            record = read_record(trial_dir)
        except (OSError, ValueError):
            continue
        if record is None or record.device != device or not record.images_per_sec:
            continue
        amp = device == "cuda" and bool((record.config.get("recipe") or {}).get("amp", True))  # CPU: no autocast
        key = _measure_key(record.dataset, record.backbone, record.method, _image_size(record.config, record.dataset),
                           amp)
        found.setdefault(key, []).append((record.images_per_sec / max(record.world_size, 1),
                                          record.gpu_name or record.hostname or device, under_contention(record)))
    return found


def measured_throughput(results_root: Path) -> dict[tuple, Measured]:
    """Training images/s per GPU of earlier GPU trials under `results_root`, by dataset, backbone, method,
    image size and precision (median over records). CPU records are ignored: they say nothing about GPUs."""
    found = _throughputs(results_root, "cuda")
    return {key: Measured(statistics.median(v for v, _, _ in rows), len(rows), rows[0][1])
            for key, rows in found.items()}


def cpu_lines(estimates: Sequence[TrialEstimate], results_root: Path, queued: Collection[str]) -> list[str]:
    """On a machine without a GPU: say that the table's figures are GPU estimates, and estimate the CPU time of
    the trials to run from earlier CPU records of the same dataset, backbone, method and image size."""
    found = _throughputs(results_root, "cpu")
    lines = [f"no GPU on this machine: the GPU-hours above are estimates for one {ASSUMED_GPU} GPU, not for this "
             f"CPU, where a trial takes far longer"]
    todo = [e for e in estimates if e.trial.trial_id in queued]
    known, contended, hours = 0, 0, 0.0
    for e in todo:
        t = e.trial
        rows = found.get(_measure_key(t.dataset.name, t.backbone.name, t.method, e.image_size, False))
        if not rows:
            continue
        quiet = [v for v, _, busy in rows if not busy]
        known += 1
        contended += not quiet
        hours += e.train_images * t.recipe.epochs / statistics.median(quiet or [v for v, _, _ in rows]) / 3600
    if not todo:
        return lines
    if not known:
        return [*lines, "CPU estimate: no CPU record of these settings yet; run one trial (e.g. --only seed=0) "
                        "and dry-run again to get one"]
    busy = f"; {contended} from records measured under contention (slower than a quiet machine)" if contended else ""
    spent = _hours(hours) if hours < 0.1 else f"{_hours(hours)} h"  # _hours gives small values their own unit
    return [*lines, f"CPU estimate: {spent} of training for {known} of the {len(todo)} trials to run, "
                    f"at the images/s earlier CPU records of the same settings measured (evaluation not included"
                    f"{busy})"]


# ---- the estimate ----------------------------------------------------------------------------------------


@dataclass
class TrialEstimate:
    trial: TrialConfig
    image_size: int
    forward_gflops: float
    train_images: int
    val_images: int
    multiplier: float
    gpu_hours: float
    basis: str

    @property
    def gpus(self) -> int:
        return self.trial.resources.gpus_per_trial

    @property
    def wall_hours(self) -> float:
        return self.gpu_hours / self.gpus


def split_sizes(trial: TrialConfig, counts: dict[tuple, dict[str, int]] | None = None) -> tuple[int, int]:
    """Train and val images a trial uses: counted by the pre-flight check when it ran, else the dataset
    table's full sizes (capped by limit_per_class × classes)."""
    ds = trial.dataset
    counted = (counts or {}).get((ds.key, ds.root, ds.limit_per_class, ds.val_limit_per_class))
    if counted:
        return counted["train"], counted["val"]
    info = ds.info()
    train, val = info.expected_counts.get("train", 0), info.expected_counts.get("val", 0)
    if ds.limit_per_class:
        train = min(train, ds.limit_per_class * info.num_classes)
    if ds.val_limit_per_class:
        val = min(val, ds.val_limit_per_class * info.num_classes)
    return train, val


def estimate_trial(trial: TrialConfig, *, cache: FlopsCache | None = None,
                   measured: dict[tuple, Measured] | None = None,
                   counts: dict[tuple, dict[str, int]] | None = None) -> TrialEstimate:
    info = trial.dataset.info()
    recipe = trial.recipe
    size = recipe.image_size or info.image_size
    fwd = forward_flops(trial.backbone.name, trial.backbone.kwargs, info.num_classes, info.in_chans, size, cache)
    train, val = split_sizes(trial, counts)
    multiplier = method_multiplier(trial.method)
    rate = EFFECTIVE_FLOPS["bf16" if recipe.amp else "fp32"]
    eval_s = fwd * val * recipe.epochs * eval_passes(trial) / rate
    hit = (measured or {}).get(_measure_key(trial.dataset.name, trial.backbone.name, trial.method, size, recipe.amp))
    if hit:
        train_s = train * recipe.epochs / hit.images_per_sec_per_gpu
        basis = (f"measured {hit.images_per_sec_per_gpu:,.0f} img/s/GPU ({hit.records} record"
                 f"{'s' if hit.records > 1 else ''}, {hit.gpu})")
    else:
        train_s = fwd * 3 * train * recipe.epochs * multiplier / rate
        basis = "model"
    return TrialEstimate(trial, size, fwd / 1e9, train, val, multiplier, (train_s + eval_s) / 3600, basis)


def estimate(trials: Sequence[TrialConfig], results_root: Path,
             counts: dict[tuple, dict[str, int]] | None = None) -> list[TrialEstimate]:
    cache = flops_cache(results_root)
    measured = measured_throughput(results_root)
    try:
        return [estimate_trial(t, cache=cache, measured=measured, counts=counts) for t in trials]
    finally:
        cache.save()


# ---- presentation ----------------------------------------------------------------------------------------


def _hours(value: float) -> str:
    if value < 0.1:
        return f"{value * 60:.1f} min" if value * 60 >= 0.1 else f"{value * 3600:.2g} s"
    return f"{value:,.1f}"


@dataclass
class Row:
    dataset: str
    backbone: str
    method: str
    trials: int
    epochs: int
    image_size: int
    forward_gflops: float
    multiplier: float
    gpu_hours: float  # per trial
    gpus: int
    basis: str

    @property
    def wall_hours(self) -> float:
        return self.gpu_hours / self.gpus

    @property
    def total_gpu_hours(self) -> float:
        return self.gpu_hours * self.trials


def group(estimates: Iterable[TrialEstimate]) -> list[Row]:
    """One row per dataset × backbone × method × epochs (the seeds of a cell cost the same)."""
    rows: dict[tuple, Row] = {}
    for e in estimates:
        t = e.trial
        key = (t.dataset.name, t.backbone.name, t.method_label, t.recipe.epochs, e.image_size, e.gpus, e.basis,
               round(e.gpu_hours, 9))
        if key in rows:
            rows[key].trials += 1
        else:
            rows[key] = Row(t.dataset.name, t.backbone.name, t.method_label, 1, t.recipe.epochs, e.image_size,
                            e.forward_gflops, e.multiplier, e.gpu_hours, e.gpus, e.basis)
    return list(rows.values())


COLUMNS = ("dataset", "backbone", "method", "trials", "epochs", "px", "GFLOP/img fwd", "×method",
           "GPU-h/trial", "GPUs", "wall-h/trial", "GPU-h total", "basis")


def row_cells(row: Row) -> list[str]:
    return [row.dataset, row.backbone, row.method, str(row.trials), str(row.epochs), str(row.image_size),
            f"{row.forward_gflops:.2f}", f"{row.multiplier:g}", _hours(row.gpu_hours), str(row.gpus),
            _hours(row.wall_hours), _hours(row.total_gpu_hours), row.basis]


def rich_table(rows: list[Row], title: str):
    from rich.table import Table

    table = Table(title=title)
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("dataset", "backbone", "method", "basis") else "right")
    for row in rows:
        table.add_row(*row_cells(row))
    return table


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def summary(estimates: Sequence[TrialEstimate], queued: Collection[str] | None = None) -> str:
    """Total GPU-hours of the suite, and of the trials still to run (by trial id) when given."""
    total = sum(e.gpu_hours for e in estimates)
    line = f"estimate: {len(estimates)} trials, {total:,.1f} GPU-hours ({total / 24:,.1f} GPU-days)"
    if queued is not None:
        left = [e for e in estimates if e.trial.trial_id in queued]
        line += f"; {len(left)} to run: {sum(e.gpu_hours for e in left):,.1f} GPU-hours"
    return line


def assumptions() -> str:
    rates = ", ".join(f"{k} {v / 1e12:.0f}" for k, v in EFFECTIVE_FLOPS.items())
    return (f"cost model: forward FLOPs (FlopCounterMode, meta device) × 3 (fwd+bwd) × train images × epochs × "
            f"method multiplier, + eval forwards; effective TFLOP/s per GPU: {rates} ({ASSUMED_GPU}); DDP "
            f"scaling assumed linear; measured img/s from earlier GPU records replace the model where they exist "
            f"(docs/cost_model.md)")
