"""`--tiny` and `--dry-run`: how `mixbench run|check` prepare their arguments before the suite is loaded.

`--tiny` (`mixbench run|check SUITE --tiny`, see docs/cost_model.md "--tiny") writes one fixture per dataset of
the suite, once, into `<results>/.tiny/data/<dataset>/` (each dataset's `DatasetSpec.write_tiny`, in its real
on-disk layout), and a scaled-down copy of the suite that trains on them into `<results>/.tiny/suites/<suite>.yaml`;
its trials go to `<results>/<suite>-tiny/`. Every paper suite runs end to end this way in seconds per trial.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixbench.check import Expected, needs_root, placeholder_roots, trial_image_size, trial_problems
from mixbench.data.registry import dataset_spec

TINY_DIR = ".tiny"  # under the results folder: data/<dataset>/ (fixtures) and suites/<suite>.yaml
TINY_CLASSES = 2
TINY_TRAIN_PER_CLASS = 2
TINY_VAL_PER_CLASS = 1
TINY_BATCH = 2  # global; 4 train images -> 2 steps
TINY_SIZES = (32, 64, 96, 128, 160, 192, 224)  # the first one every backbone and method accepts is used
FIXTURE_VERSION = 2  # bump when a tiny fixture changes, so cached ones are rewritten
_MARKER = ".mixbench-fixture.json"

def tiny_expected() -> Expected:
    """What every tiny fixture holds: 2 classes, 2 train and 1 val image each."""
    return Expected(TINY_CLASSES, {"train": TINY_CLASSES * TINY_TRAIN_PER_CLASS,
                                   "val": TINY_CLASSES * TINY_VAL_PER_CLASS})


def _fixture_root(final: Path) -> Path | None:
    """The root inside a finished fixture tree of the current version, or None."""
    try:
        info = json.loads((final / _MARKER).read_text())
        return final / info["root"] if info.get("version") == FIXTURE_VERSION else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def tiny_fixture(dataset: str, cache: Path) -> Path:
    """The root of `dataset`'s tiny fixture under `cache`, written once (atomically: a half-written tree is never
    used, and concurrent writers agree on one)."""
    spec = dataset_spec(dataset)
    if spec.write_tiny is None:
        raise ValueError(f"--tiny: dataset {dataset!r} has no tiny-fixture writer; fix: give its DatasetSpec a "
                         f"write_tiny (see docs/adding_a_dataset.md)")
    final = Path(cache) / dataset
    root = _fixture_root(final)
    if root is not None:
        return root
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{dataset}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    written = spec.write_tiny(tmp, TINY_CLASSES, TINY_TRAIN_PER_CLASS, TINY_VAL_PER_CLASS)
    (tmp / _MARKER).write_text(json.dumps({"version": FIXTURE_VERSION, "dataset": dataset,
                                           "root": os.path.relpath(written, tmp)}) + "\n")
    shutil.rmtree(final, ignore_errors=True)  # an older version, or an interrupted write
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished first: use its tree
        shutil.rmtree(tmp, ignore_errors=True)
    root = _fixture_root(final)
    if root is None:
        raise RuntimeError(f"--tiny could not write the {dataset} fixture into {final}")
    return root


@dataclass
class TinyRun:
    """A suite's --tiny variant: where it was written, its fixtures' expected contents, the size chosen."""

    source: str  # the suite file it was made from
    suite_path: Path
    results_root: Path
    expected: dict[str, Expected]
    image_size: int


def tiny_image_size(trials: Sequence, largest: int) -> int:
    """The smallest of TINY_SIZES (up to the suite's own size) at which every backbone runs and every method's
    constraints hold (PuzzleMix grids, AutoMix stages); the suite's size when none does."""
    distinct = {(t.backbone.name, json.dumps(t.backbone.kwargs, sort_keys=True), t.dataset.name, t.method,
                 json.dumps(t.hparams, sort_keys=True, default=str)): t for t in trials}
    for size in (s for s in TINY_SIZES if s <= largest):
        if all(not trial_problems(t, size) for t in distinct.values()):
            return size
    return largest


def tiny_overrides(image_size: int) -> dict[str, Any]:
    """What --tiny forces on every trial, as the suite's last override (so no override of the suite undoes it)."""
    return {
        "recipe.epochs": 1,
        "recipe.batch_size": TINY_BATCH,
        "recipe.image_size": image_size,
        "recipe.eval_batch_size": None,
        "recipe.num_workers": 0,
        "recipe.last_n": 1,
        "recipe.schedule.warmup_epochs": 0,
        "dataset.limit_per_class": TINY_TRAIN_PER_CLASS,
        "dataset.val_limit_per_class": TINY_VAL_PER_CLASS,
        "resources.gpus_per_trial": 1,
    }


def prepare_tiny(suite_path: str | Path, sets: list[str] | None = None, results: str | Path | None = None
                 ) -> TinyRun:
    """Write the fixtures and the --tiny variant of a suite; see docs/cost_model.md "--tiny" for what changes.

    The suite is validated and expanded first against the fixtures, so any mistake is reported against the
    user's file, not the generated one.
    """
    import yaml

    from mixbench.results import atomic_write_text
    from mixbench.suite import expand, load_suite

    suite = load_suite(suite_path, sets)
    results_root = Path(results or suite.results_dir)
    cache = results_root / TINY_DIR
    roots: dict[str, str] = {}
    expected: dict[str, Expected] = {}
    for ds in suite.datasets:
        if ds.key not in roots and needs_root(ds.name):
            roots[ds.key] = str(tiny_fixture(ds.name, cache / "data").resolve())
            expected[ds.key] = tiny_expected()
    trials = expand(suite, suite_path, roots)
    size = tiny_image_size(trials, max(trial_image_size(t) for t in trials))

    data = suite.model_dump(mode="json", exclude_unset=True)
    data["name"] = f"{suite.name}-tiny"
    data["description"] = (f"--tiny variant of {suite_path}, generated by mixbench: fixture data "
                           f"({TINY_CLASSES} classes x {TINY_TRAIN_PER_CLASS} train / {TINY_VAL_PER_CLASS} val "
                           f"images), 1 epoch, batch {TINY_BATCH}, {size} px, seed {suite.seeds[0]}, 1 device")
    data["datasets"] = [{**d, "root": roots.get(d.get("label") or d["name"], d.get("root")),
                         "limit_per_class": TINY_TRAIN_PER_CLASS, "val_limit_per_class": TINY_VAL_PER_CLASS}
                        for d in suite.model_dump(mode="json")["datasets"]]
    data["seeds"] = [suite.seeds[0]]
    forced = tiny_overrides(size)
    recipe = data.setdefault("recipe", {})
    for key, value in forced.items():
        if key.startswith("recipe."):
            node = recipe
            *parents, leaf = key.split(".")[1:]
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    data["overrides"] = [*data.get("overrides", []), {"match": {}, "set": forced}]
    data["resources"] = {**data.get("resources", {}), "gpus_per_trial": 1}
    # Pretrained weights would be a download (or a cache miss): fine-tuning suites start from random ones.
    data["backbones"] = [{**b, "kwargs": {**b.get("kwargs", {}), "pretrained": False}} if b.get("kwargs", {}).get(
        "pretrained") else b for b in suite.model_dump(mode="json")["backbones"]]
    data["results_dir"] = str(results_root)
    out = cache / "suites" / f"{suite.name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Generated by `mixbench ... --tiny` from {suite_path}; do not edit (it is rewritten on every\n"
              f"# --tiny run). The last override forces the tiny recipe on every trial.\n")
    atomic_write_text(out, header + yaml.safe_dump(data, sort_keys=False))
    return TinyRun(str(suite_path), out, results_root, expected, size)


# ---- the command line --------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What `prepare_args` did to the command line before the suite is loaded."""

    source: str  # the suite file the user named
    expected: dict[str, Expected] | None = None  # --tiny: the fixtures' exact contents
    no_data: set[str] = field(default_factory=set)  # --dry-run: datasets counted from the table, not the disk
    tiny: Any = None  # the TinyRun of --tiny


def prepare_args(args) -> Prepared:
    """Adjust `run`/`check` arguments before the suite is loaded.

    --tiny: write the fixtures and the scaled-down suite (`prepare_tiny`) and point the
    command at them (the fixture roots go in as --data-root, so no MIXBENCH_DATA_* variable can redirect them).
    --dry-run: give datasets without a data root a stand-in root, so the grid and the estimate print before the
    data is there (the check reports them as not counted).
    """
    prepared = Prepared(source=str(args.suite))
    if getattr(args, "tiny", False):
        from mixbench.suite import load_suite

        tiny = prepare_tiny(args.suite, getattr(args, "set", None), getattr(args, "results", None))
        suite = load_suite(tiny.suite_path)
        args.suite, args.set = str(tiny.suite_path), None
        args.data_root = [f"{d.key}={d.root}" for d in suite.datasets if d.root]
        prepared.expected, prepared.tiny = tiny.expected, tiny
    elif getattr(args, "dry_run", False):
        from mixbench.suite import load_suite, parse_data_roots

        suite = load_suite(args.suite, getattr(args, "set", None))
        stand_ins = placeholder_roots(suite, parse_data_roots(getattr(args, "data_root", None), suite))
        args.data_root = [*(getattr(args, "data_root", None) or []), *(f"{n}={r}" for n, r in stand_ins.items())]
        prepared.no_data = set(stand_ins)
    return prepared
