"""Pre-flight check of a suite: `mixbench check SUITE`, and the first thing every `mixbench run` does.

`mixbench.suite.expand` has already validated the file (keys, backbone and method names, hyper-parameters, that
each data root exists). This module checks what would otherwise fail minutes or hours into a run:

* **data**: every dataset root holds the expected classes and image counts per split (the dataset table's
  `expected_counts`; every class present). Counting lists index files and directories through the dataset's
  own reader and never decodes an image. A difference from the full dataset is an error, or a warning for a
  split the suite limits (`limit_per_class` for train, `val_limit_per_class` for val).
* **backbones**: each backbone builds and runs a forward pass at the suite's image size (on the meta device:
  no memory, no time; the same pass counts the FLOPs for the cost estimate).
* **methods**: `Method.check_input(image size, backbone)` holds for every method × backbone (PuzzleMix grids,
  AutoMix's `mask_layer`, optional dependencies).
* **batches**: the global batch divides over `gpus_per_trial`, and the train split fills at least one batch.

Every problem is one line, `file: field: problem; fix`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixbench.suite import Suite, TrialConfig

SHOW_MISSING = 5  # class names listed in a "missing" message


@dataclass(frozen=True)
class Expected:
    """What a dataset root should hold: classes, and images per split ("train", "val")."""

    num_classes: int
    counts: dict[str, int]


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was verified, one line each
    # (dataset, root, limit_per_class, val_limit_per_class) -> {"train": images used, "val": images used}
    counts: dict[tuple, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, level: str, line: str) -> None:
        target = self.errors if level == "error" else self.warnings
        if line not in target:
            target.append(line)


# ---- data --------------------------------------------------------------------------------------------------


def _names(indices: Sequence[int], classes: Sequence[str]) -> str:
    shown = [classes[i] for i in indices[:SHOW_MISSING]]
    more = f", ... (+{len(indices) - SHOW_MISSING} more)" if len(indices) > SHOW_MISSING else ""
    return ", ".join(shown) + more


def inspect_dataset(name: str, root: str | Path | None, limit: int | None, val_limit: int | None, *,
                    expected: Expected | None = None, field_name: str = "datasets[0]",
                    path: str = "<suite>", options: Mapping[str, Any] | None = None
                    ) -> tuple[list[tuple[str, str]], list[str], dict[str, int]]:
    """Count one dataset root: (findings as (level, line), notes, images used per split).

    The counts come from the dataset's own reader, which lists a split without decoding an image; the spec's
    `verify` then looks for what decoding would trip on later (for `imagefolder`: every image's header and end).
    """
    import torch

    from mixbench.data import dataset_info, load_split
    from mixbench.data.registry import dataset_spec

    spec = dataset_spec(name)
    root = Path(root).expanduser() if root is not None else None
    findings: list[tuple[str, str]] = []
    notes: list[str] = []
    used: dict[str, int] = {}
    try:
        info = dataset_info(name, options, root)
    except (FileNotFoundError, ValueError, OSError) as err:
        return [("error", f"{path}: {field_name}.root: {err}")], notes, used
    want = expected or Expected(info.num_classes, dict(info.expected_counts))
    for split, limit_key, split_limit in (("train", "limit_per_class", limit), ("val", "val_limit_per_class",
                                                                               val_limit)):
        try:
            ds = load_split(name, root, split, options=options)  # lists the split; no image is decoded
        except (FileNotFoundError, ValueError, OSError) as err:
            findings.append(("error", f"{path}: {field_name}.root: {err}"))
            continue
        findings += [("error", f"{path}: {field_name}.root: {problem}") for problem in spec.verify(ds)]
        level = "warning" if split_limit else "error"
        why = f" ({field_name}.{limit_key} is set, so this is a warning)" if split_limit else ""
        purpose = "train" if split == "train" else "evaluate"
        fix = (f"; fix: point --data-root {name}=PATH at the complete {name} files, or set "
               f"{field_name}.{limit_key} to {purpose} on a subset") if not split_limit else ""
        unit, where = spec.where(root, split) if root is not None else ("classes", f"{name} (in memory)")
        per_class = torch.bincount(ds.targets, minlength=want.num_classes) if len(ds) else torch.zeros(
            want.num_classes, dtype=torch.int64)
        present = int((per_class > 0).sum())
        missing = [i for i in range(want.num_classes) if i >= per_class.numel() or per_class[i] == 0]
        if missing:
            named = [i for i in missing if i < len(ds.classes)]  # the others are unknown to this copy of the data
            listed = f": missing {_names(named, ds.classes)}" if named else ""
            findings.append((level, f"{path}: {field_name}.root: {name}: {where} has {present} {unit}, expected "
                                    f"{want.num_classes}{listed} (looked in {where}){why}{fix}"))
        expected_n = want.counts.get(split)
        if expected_n is not None and len(ds) != expected_n:
            findings.append((level, f"{path}: {field_name}.root: {name}: {where} has {len(ds):,} {split} images, "
                                    f"expected {expected_n:,} (looked in {where}){why}{fix}"))
        used[split] = int(per_class.clamp(max=split_limit).sum()) if split_limit else len(ds)
        notes.append(f"{name} {split}: {len(ds):,} images in {present} classes at {where}"
                     + (f", {used[split]:,} used ({limit_key} {split_limit})" if split_limit else ""))
    return findings, notes, used


# ---- backbones, methods, batches --------------------------------------------------------------------------


def _index(items: Sequence[Any], name: str, attr: str = "name") -> int:
    return next((i for i, item in enumerate(items) if getattr(item, attr, None) == name), 0)


def trial_image_size(trial: TrialConfig) -> int:
    return trial.recipe.image_size or trial.dataset.info().image_size


def backbone_problem(trial: TrialConfig, image_size: int) -> str | None:
    """Why the backbone cannot run a forward pass at `image_size` (meta device), or None."""
    from mixbench.cost import forward_flops

    info = trial.dataset.info()
    try:
        forward_flops(trial.backbone.name, trial.backbone.kwargs, info.num_classes, info.in_chans, image_size)
    except Exception as err:  # whatever the model raises at this size is the problem to report
        return f"{trial.backbone.name} does not run at {image_size}×{image_size} px ({type(err).__name__}: {err})"
    return None


_METHODS: dict[tuple[str, str], Any] = {}


def method_problem(trial: TrialConfig, image_size: int) -> str | None:
    """Why the method cannot run at `image_size` on the trial's backbone (`Method.check_input`), or None."""
    from mixbench.methods.registry import create_method

    key = (trial.method, json.dumps(trial.hparams, sort_keys=True, default=str))
    try:
        if key not in _METHODS:
            _METHODS[key] = create_method(trial.method, **trial.hparams)
        _METHODS[key].check_input((image_size, image_size), trial.backbone.name)
    except (ValueError, TypeError, ImportError) as err:
        return str(err)
    return None


def trial_problems(trial: TrialConfig, image_size: int) -> list[str]:
    """Backbone and method problems of one trial at `image_size` (used by --tiny to pick a size, too)."""
    return [p for p in (backbone_problem(trial, image_size), method_problem(trial, image_size)) if p]


# ---- the whole suite ---------------------------------------------------------------------------------------


def check_suite(suite: Suite, trials: Sequence[TrialConfig], path: str | Path = "<suite>", *,
                expected: dict[str, Expected] | None = None, no_data: Collection[str] = ()) -> CheckReport:
    """Every check of the module docstring over the trials of `suite` (already expanded from `path`).

    `expected` replaces the dataset table's classes and counts (--tiny checks its fixtures exactly);
    datasets named in `no_data` have no root yet (a dry run): they are noted, not counted.
    """
    path = str(path)
    report = CheckReport()
    expected = expected or {}

    datasets = {(t.dataset.key, t.dataset.root, t.dataset.limit_per_class, t.dataset.val_limit_per_class): t.dataset
                for t in trials}
    for key, ds in datasets.items():
        name, root, limit, val_limit = key
        field_name = f"datasets[{_index(suite.datasets, name, 'key')}]"
        if name in no_data:
            report.add("warning", f"{path}: {field_name}.root: {name}: no data root given, so nothing was counted "
                                  f"(the estimate uses the full dataset's sizes); a run needs --data-root "
                                  f"{name}=PATH or MIXBENCH_DATA_{name.upper()}")
            continue
        findings, notes, used = inspect_dataset(ds.name, root, limit, val_limit, expected=expected.get(name),
                                                field_name=field_name, path=path, options=ds.options)
        for level, line in findings:
            report.add(level, line)
        report.notes += notes
        if "train" in used and "val" in used:
            report.counts[key] = used

    checked: set[tuple] = set()
    for trial in trials:
        size = trial_image_size(trial)
        key = (trial.dataset.key, trial.backbone.name, json.dumps(trial.backbone.kwargs, sort_keys=True), size)
        if key not in checked:
            checked.add(key)
            problem = backbone_problem(trial, size)
            if problem:
                j = _index(suite.backbones, trial.backbone.name)
                report.add("error", f"{path}: backbones[{j}].name: {problem}; fix: change recipe.image_size or "
                                    f"the backbone")
        key = (trial.method, json.dumps(trial.hparams, sort_keys=True, default=str), trial.backbone.name, size)
        if key not in checked:
            checked.add(key)
            problem = method_problem(trial, size)
            if problem:
                k = _index(suite.methods, trial.method_label, "display")
                report.add("error", f"{path}: methods[{k}]: {trial.method_label} on {trial.backbone.name} at "
                                    f"{size} px: {problem}")
        recipe, gpus = trial.recipe, trial.resources.gpus_per_trial
        if recipe.batch_size % gpus:
            report.add("error", f"{path}: recipe.batch_size: {recipe.batch_size} does not divide over "
                                f"resources.gpus_per_trial {gpus} (trial {trial.dirname}); fix: make the global "
                                f"batch a multiple of the GPUs")
        ds = trial.dataset
        used = report.counts.get((ds.key, ds.root, ds.limit_per_class, ds.val_limit_per_class))
        if used is not None and -(-used["train"] // gpus) < recipe.batch_size // gpus:  # the engine's rule
            report.add("error", f"{path}: recipe.batch_size: {ds.name} has {used['train']:,} train images in use, "
                                f"fewer than one batch of {recipe.batch_size} (trial {trial.dirname}); fix: lower "
                                f"recipe.batch_size or raise datasets[].limit_per_class")
    from mixbench.evaluate import evaluation_problems

    for line in evaluation_problems(suite, trials, path):
        report.add("error", line)
    if not report.errors:
        sizes = sorted({trial_image_size(t) for t in trials})
        report.notes.append(f"{len({t.backbone.name for t in trials})} backbones and "
                            f"{len({t.method_label for t in trials})} methods run at "
                            f"{', '.join(f'{s} px' for s in sizes)}")
    return report


def needs_root(name: str) -> bool:
    """Whether the dataset is read from files (every one but the generated `synthetic`)."""
    from mixbench.data.registry import dataset_spec

    return dataset_spec(name).needs_root


def placeholder_roots(suite: Suite, given: dict[str, str]) -> dict[str, str]:
    """For a dry run: datasets whose root is not given (or does not exist) get a stand-in, so the grid and the
    estimate print before the data is there. Returns {name: stand-in}; the check notes them as not counted."""
    import tempfile

    from mixbench.data.registry import dataset_spec
    from mixbench.suite import resolve_root

    stand_in = tempfile.gettempdir()
    out = {}
    for ds in suite.datasets:
        try:
            spec = dataset_spec(ds.name)
        except ValueError:
            continue  # expand reports the unknown name
        if not spec.needs_root:
            continue
        root = resolve_root(ds, given, spec.info.default_root)
        if root is None or not Path(root).expanduser().exists():
            out[ds.key] = stand_in
    return out


def report_lines(report: CheckReport, verbose: bool = True) -> list[str]:
    lines = [f"error: {e}" for e in report.errors] + [f"warning: {w}" for w in report.warnings]
    if verbose:
        lines += [f"  ok: {n}" for n in report.notes]
    return lines
