"""Suite YAML -> validated `Suite` -> list of `TrialConfig`, one per dataset × backbone × method × seed.

A suite is data, not code. Every trial resolves to one flat config: the recipe, the method's
hyper-parameters (card defaults for the dataset's family, then the suite's values, then `overrides`), the
backbone and dataset. The trial id is a hash of that config, so re-running a suite finds what is done.
Any mistake is reported before anything runs, as one line naming the file, the field and the fix.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

AXES = ("dataset", "backbone", "method", "seed")
MAX_SEED = 2**31 - 1  # what every generator seeds from, numpy's included
SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_slug(value: str, what: str) -> str:
    """Suite names and method labels become folder names: one path component, no '..', no '/'."""
    if not SLUG.fullmatch(value):
        fixed = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-.") or "name"
        raise ValueError(f"{value!r} is not a valid {what}: it names a folder, so only letters, digits, '.', '_' "
                         f"and '-' are allowed, starting with a letter or digit; fix: e.g. {fixed!r}")
    return value


def trial_axes(dataset_key: str, dataset: str, backbone: str, method_label: str, method: str,
               seed: int) -> dict[str, Any]:
    """A trial's place on each axis; a dataset answers to its key (label) and name, a method to its label and
    registered name."""
    return {"dataset": [dataset_key, dataset], "backbone": backbone, "method": [method_label, method], "seed": seed}


def axes_match(wanted: dict[str, Any], axes: dict[str, Any]) -> bool:
    """Whether a trial at `axes` is one of `wanted` (axis -> a value or a list of values), compared as text."""
    for axis, want in wanted.items():
        values = want if isinstance(want, list) else [want]
        have = axes[axis] if isinstance(axes[axis], list) else [axes[axis]]
        if not any(str(w) == str(h) for w in values for h in have):
            return False
    return True


class SuiteError(ValueError):
    """A suite that cannot run; the message is one line per problem: file: field: problem; fix."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptimizerConfig(Strict):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)  # for the global batch (per-GPU batch × GPUs)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only


class ScheduleConfig(Strict):
    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up from warmup_start_factor × lr
    warmup_start_factor: float = Field(0.01, gt=0, le=1)
    min_lr: float = Field(0.0, ge=0)  # cosine floor (openmixup AutoMix CIFAR uses 0.05)
    milestones: list[int] = []  # step: epochs at which lr *= gamma
    gamma: float = Field(0.1, gt=0)


class Recipe(Strict):
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)  # global batch size; the lr is defined for it
    image_size: int | None = Field(None, gt=0)  # None: the dataset's own resolution
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU, where it would only be slower)
    channels_last: bool = True  # faster convolutions (CUDA and CPU), and the same layout for every method
    sync_bn: bool = False  # under DDP: batch-norm statistics over the global batch (CUDA only); else per process
    grad_clip: float | None = Field(None, gt=0)
    eval_batch_size: int | None = Field(None, gt=0)
    num_workers: int = Field(4, ge=0)  # DataLoader workers for file datasets; in-memory ones need none
    last_n: int = Field(10, gt=0)  # epochs in the "median of the last N" statistic of the record
    # Validate every k-th epoch (and always the last `last_n`): on small training sets, evaluating a large fixed
    # val set each epoch costs more than the epoch. It never changes the trained model, so not the trial id.
    eval_every: int = Field(1, gt=0)


def _name_or_mapping(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class DatasetConfig(BaseModel):
    """A dataset entry: `cifar10`, `{name: imagefolder, root: PATH, label: flowers}`, or a plug-in's spec as
    `package.module:attr`. Keys other than these fields are the dataset's options (`mixbench.data.folder` lists
    imagefolder's); its spec validates them."""

    model_config = ConfigDict(extra="allow")
    name: str
    root: str | None = None  # not part of the trial id: moving the data does not redo the trial
    label: str | None = None  # how the dataset appears in tables, trial folders and --data-root; default: name
    limit_per_class: int | None = Field(None, gt=0)  # train images kept per class (tiny runs)
    val_limit_per_class: int | None = Field(None, gt=0)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def key(self) -> str:
        """The dataset's name in tables, records, trial folders, `--data-root KEY=PATH` and MIXBENCH_DATA_<KEY>."""
        return self.label or self.name

    def info(self) -> Any:
        """The `DatasetInfo` of this entry (a configurable dataset's depends on its options and files)."""
        from mixbench.data import dataset_info

        return dataset_info(self.name, self.options, self.root)


class BackboneConfig(Strict):
    name: str
    kwargs: dict[str, Any] = {}  # passed to timm.create_model, e.g. drop_path_rate


class MethodConfig(BaseModel):
    """A method entry: `mixup` or `{name: mixup, alpha: 0.2, label: mixup-a0.2}`; extra keys are hparams."""

    model_config = ConfigDict(extra="allow")
    name: str
    label: str | None = None  # how the method appears in tables; defaults to name

    @field_validator("label")
    @classmethod
    def _label_is_slug(cls, value: str | None) -> str | None:
        return None if value is None else check_slug(value, "method label")

    @property
    def hparams(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def display(self) -> str:
        return self.label or self.name


class Override(Strict):
    """Set dotted keys of the trials whose axes match, e.g. match {method: cutmix}, set {method.alpha: 1}."""

    match: dict[str, Any]
    set: dict[str, Any]

    @model_validator(mode="after")
    def _axes_known(self) -> Override:
        unknown = sorted(set(self.match) - set(AXES))
        if unknown:
            raise ValueError(f"match on unknown axis {unknown}; axes are {', '.join(AXES)}")
        return self

    def matches(self, axes: dict[str, Any]) -> bool:
        return axes_match(self.match, axes)


class Resources(Strict):
    gpus_per_trial: int = Field(1, ge=1)  # > 1: the trial runs under DDP
    cpus_per_trial: int | None = Field(None, ge=1)
    slurm: dict[str, Any] = {}  # submitit options (partition, account, timeout_min, ...)


class EvaluationConfig(Strict):
    """What is measured beyond top-1 after the last epoch (mixbench.evaluate); it never changes the trial id."""

    calibration: bool = True  # ECE (15/10 bins), MCE, NLL, Brier, temperature scaling
    corruptions: Literal["all", "none"] | list[str] = "none"  # Hendrycks corruptions of the val split
    severities: list[int] = [1, 2, 3, 4, 5]
    occlusion: list[float] = [0.25, 0.5]  # fractions of patches dropped; [] for none
    occlusion_grid: int = Field(4, ge=1)  # patches per side
    fgsm: bool = True
    fgsm_epsilon: float = Field(8 / 255, gt=0, le=1)  # in [0, 1] pixel units
    seed: int = 0  # of the corrupted sets, occlusion patches and the temperature-scaling split

    @field_validator("corruptions")
    @classmethod
    def _known_corruptions(cls, value: Any) -> Any:
        from mixbench.evaluation.corruptions import CORRUPTIONS

        unknown = [c for c in value if c not in CORRUPTIONS] if isinstance(value, list) else []
        if unknown:
            raise ValueError(f"unknown corruption {', '.join(map(repr, unknown))}; allowed: all, none or a list of "
                             f"{', '.join(CORRUPTIONS)}")
        return value

    @field_validator("severities")
    @classmethod
    def _severities_in_range(cls, value: list[int]) -> list[int]:
        bad = [s for s in value if not 1 <= s <= 5]
        if bad or not value:
            raise ValueError(f"severity {bad or value} outside 1-5; allowed: a non-empty list of 1, 2, 3, 4, 5")
        return value

    @field_validator("occlusion")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in value):
            raise ValueError(f"occlusion fractions {value} must lie strictly between 0 and 1")
        return value

    @property
    def corruption_names(self) -> list[str]:
        from mixbench.evaluation.corruptions import CORRUPTIONS

        if self.corruptions == "all":
            return list(CORRUPTIONS)
        return [] if self.corruptions == "none" else list(self.corruptions)


class Suite(Strict):
    name: str
    description: str = ""
    datasets: list[Annotated[DatasetConfig, BeforeValidator(_name_or_mapping)]] = Field(min_length=1)
    backbones: list[Annotated[BackboneConfig, BeforeValidator(_name_or_mapping)]] = Field(min_length=1)
    methods: list[Annotated[MethodConfig, BeforeValidator(_name_or_mapping)]] = Field(min_length=1)
    seeds: list[int] = Field([0], min_length=1)
    recipe: Recipe
    overrides: list[Override] = []
    resources: Resources = Resources()
    results_dir: str = "results"  # relative to the current directory; trials go to <results_dir>/<name>/
    evaluation: EvaluationConfig = EvaluationConfig()

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str) -> str:
        return check_slug(value, "suite name")

    @field_validator("seeds")
    @classmethod
    def _seeds_in_range_and_distinct(cls, seeds: list[int]) -> list[int]:
        for seed in seeds:
            if not 0 <= seed <= MAX_SEED:
                raise ValueError(f"seed {seed} is outside 0..{MAX_SEED} (2^31 - 1); fix: use a seed in that range")
        repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
        if repeated:
            raise ValueError(f"seed {', '.join(map(str, repeated))} listed twice; a seed is one trial per setting; "
                             f"fix: list each seed once")
        return seeds

    @field_validator("methods")
    @classmethod
    def _methods_distinct(cls, methods: list[MethodConfig]) -> list[MethodConfig]:
        seen: dict[str, int] = {}
        for i, method in enumerate(methods):
            if method.display in seen:
                raise ValueError(
                    f"methods[{seen[method.display]}] and methods[{i}] are both {method.display!r}; fix: remove one, "
                    f"or tell two settings apart with label:, e.g. {{name: {method.name}, label: {method.name}-b}}")
            seen[method.display] = i
        return methods


class TrialConfig(Strict):
    """One trial, fully resolved: everything `run_trial` needs and nothing else."""

    suite: str
    dataset: DatasetConfig
    backbone: BackboneConfig
    method: str
    method_label: str
    method_version: int
    hparams: dict[str, Any]
    seed: int = Field(ge=0, le=MAX_SEED)
    recipe: Recipe
    resources: Resources = Resources()
    evaluation: EvaluationConfig = EvaluationConfig()

    def identity(self) -> dict[str, Any]:
        """What the id hashes: the config less where the data lives, how many devices run it and what is
        measured after training (none of which changes the trained model)."""
        data = self.model_dump(mode="json", exclude={"resources": True, "evaluation": True, "dataset": {"root"}})
        data.pop("suite")
        data["recipe"].pop("eval_every")
        if data["dataset"].get("label") is None:  # ids from before dataset labels existed stay the same
            data["dataset"].pop("label", None)
        return data

    @property
    def trial_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def dirname(self) -> str:
        dataset = re.sub(r"[^\w.-]", "_", self.dataset.key)
        return f"{dataset}-{self.backbone.name}-{self.method_label}-s{self.seed}-{self.trial_id[:8]}"

    @property
    def axes(self) -> dict[str, Any]:
        return trial_axes(self.dataset.key, self.dataset.name, self.backbone.name, self.method_label, self.method,
                          self.seed)


# ---- error messages ------------------------------------------------------------------------------------


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" not in str(part):  # skip pydantic's names for validator wrappers
            out += f".{part}" if out else str(part)
    return out


def _owner(loc: tuple) -> type[BaseModel] | None:
    """The model that owns the key at `loc`, to list the keys it allows."""
    parent = _loc(loc[:-1])
    shape = re.sub(r"\[\d+\]", "[]", parent)
    return {
        "": Suite, "recipe": Recipe, "recipe.optimizer": OptimizerConfig, "recipe.schedule": ScheduleConfig,
        "backbones[]": BackboneConfig, "overrides[]": Override,
        "resources": Resources, "evaluation": EvaluationConfig,
    }.get(shape)


def _fix(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _owner(err["loc"])
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key; fix: remove it ({hint}allowed keys here: {', '.join(allowed)})"
    if kind == "missing":
        return "this key is required; fix: add it"
    if kind == "value_error" and "fix:" in err["msg"]:  # our validators say what is wrong and the fix
        return err["msg"].removeprefix("Value error, ")
    return f"{err['msg']} (got {err.get('input')!r})"


def format_validation_error(path: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        lines.append(f"{path}: {_loc(e['loc']) or '(top level)'}: {_fix(e)}")
    return "\n".join(lines)


# ---- loading and expanding -----------------------------------------------------------------------------


def load_suite(path: str | Path, sets: list[str] | None = None) -> Suite:
    """Read and validate a suite; `sets` are command-line `KEY=VALUE` edits (dotted keys, YAML values)."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file; fix: give the path of a suite YAML (see suites/)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise SuiteError(f"{path}: {where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: (top level): a suite is a mapping with keys name, datasets, ...; got {raw!r}")
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SuiteError(f"--set {item}: expected KEY=VALUE, e.g. --set recipe.epochs=30")
        try:
            _set_dotted(raw, key, yaml.safe_load(value))
        except DottedKeyError as err:
            raise SuiteError(f"--set {item}: {err}") from None
    try:
        return Suite.model_validate(raw)
    except ValidationError as err:
        raise SuiteError(format_validation_error(str(path), err)) from None


class DottedKeyError(KeyError):
    """A dotted key that does not lead to a place in the document; the message names the part that fails."""

    def __str__(self) -> str:
        return str(self.args[0])


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `value` at a dotted path; a number steps into a list (`datasets.0.limit_per_class`)."""
    keys = dotted.split(".")
    node: Any = target
    for depth, key in enumerate(keys):
        parent, last = ".".join(keys[:depth]), depth == len(keys) - 1
        if isinstance(node, list):
            if not key.lstrip("-").isdigit():
                raise DottedKeyError(f"{parent} is a list; fix: give an item's index, e.g. {parent}.0")
            if not -len(node) <= int(key) < len(node):
                raise DottedKeyError(f"{parent}.{key}: index out of range; {parent} has {len(node)} item(s), "
                                     f"indexes 0 to {len(node) - 1}")
            key = int(key)
            if not last and isinstance(node[key], str):
                node[key] = {"name": node[key]}  # the axes' shorthand: an item given by its name alone
        elif isinstance(node, dict):
            if not last:
                node.setdefault(key, {})
        else:
            raise DottedKeyError(f"{parent} is a value, not a mapping or a list; fix: set it whole "
                                 f"({parent}=VALUE)")
        if last:
            node[key] = value
        else:
            node = node[key]


def data_root_from_env(dataset: str) -> str | None:
    """MIXBENCH_DATA_<NAME> (e.g. MIXBENCH_DATA_FASHION_MNIST) names one dataset's root."""
    return os.environ.get(f"MIXBENCH_DATA_{dataset.upper()}")


def resolve_root(ds: DatasetConfig, data_roots: dict[str, str], default_root: str | None) -> str | None:
    """Where a dataset's files are: --data-root, then MIXBENCH_DATA_<NAME>, then the suite's root:, then the
    dataset's usual place."""
    return data_roots.get(ds.key) or data_root_from_env(ds.key) or ds.root or default_root


def expand(
    suite: Suite, path: str | Path = "<suite>", data_roots: dict[str, str] | None = None
) -> list[TrialConfig]:
    """Every trial of the grid, resolved and validated (methods, backbones, datasets, data roots)."""
    from mixbench.data.registry import OptionError, dataset_spec, resolve_dataset
    from mixbench.methods.cards import card_defaults
    from mixbench.methods.registry import create_method, get_method_class
    from mixbench.models import check_backbone_name

    data_roots = data_roots or {}
    trials: list[TrialConfig] = []
    problems: list[str] = []

    def fail(field: str, message: str) -> None:
        if (line := f"{path}: {field}: {message}") not in problems:
            problems.append(line)

    keys = [ds.key for ds in suite.datasets]
    datasets = []  # (dataset config, its info, the trial's dataset entry)
    for i, ds in enumerate(suite.datasets):
        if keys.count(ds.key) > 1:
            fail(f"datasets[{i}].label", f"{ds.key!r} names two datasets of the suite; fix: give each a distinct "
                 f"label:")
            continue
        try:
            spec = dataset_spec(ds.name)
        except ValueError as err:
            fail(f"datasets[{i}].name", str(err))
            continue
        info = spec.info
        root = resolve_root(ds, data_roots, info.default_root)
        if info.default_root is None and root is None and not info.in_memory:
            fail(f"datasets[{i}].root", f"{ds.key} needs a data root; set root:, --data-root {ds.key}=PATH "
                 f"or MIXBENCH_DATA_{ds.key.upper()}")
            continue
        if root is not None and not Path(root).exists():
            fail(f"datasets[{i}].root", f"{root} does not exist; fix: point root: (or --data-root {ds.key}=PATH, "
                 f"or MIXBENCH_DATA_{ds.key.upper()}) at the {ds.key} files")
            continue
        try:
            info, recorded = resolve_dataset(ds.name, ds.options, root)
        except OptionError as err:
            close = difflib.get_close_matches(err.key, sorted(DatasetConfig.model_fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            fail(f"datasets[{i}].{err.key}", f"{err}{hint}")
            continue
        except (FileNotFoundError, ValueError, OSError) as err:
            fail(f"datasets[{i}].root", str(err))
            continue
        # A plug-in named by "module:attr" gets its spec's name as label (a trial folder holds no colon).
        label = ds.label or (spec.name if ":" in ds.name else None)
        dataset = {**ds.model_dump(), "label": label, "root": str(root) if root else None, **recorded}
        datasets.append((ds, info, dataset))
    backbones = []
    for j, bb in enumerate(suite.backbones):
        try:
            check_backbone_name(bb.name)
            backbones.append(bb)
        except ValueError as err:
            fail(f"backbones[{j}].name", str(err))
    methods = []  # (index in the suite, method config, its class)
    for k, mc in enumerate(suite.methods):
        try:
            methods.append((k, mc, get_method_class(mc.name)))
        except ValueError as err:
            fail(f"methods[{k}].name", str(err))

    for (ds, info, dataset), bb, (k, mc, cls), seed in itertools.product(datasets, backbones, methods, suite.seeds):
        trial = {
            "suite": suite.name,
            "dataset": dataset,
            "backbone": bb.model_dump(),
            "method": mc.name,
            "method_label": mc.display,
            "method_version": cls.version,
            "hparams": _with_normalisation(
                {**card_defaults(cls.name or mc.name, info.family), **mc.hparams}, cls, info),
            "seed": seed,
            "recipe": suite.recipe.model_dump(),
            "resources": suite.resources.model_dump(),
            "evaluation": suite.evaluation.model_dump(),
        }
        axes = trial_axes(dataset["label"] or ds.name, ds.name, bb.name, mc.display, mc.name, seed)
        for n, ov in enumerate(suite.overrides):
            if ov.matches(axes):
                for key, value in ov.set.items():
                    target = "hparams" + key[len("method"):] if key.startswith("method.") else key
                    try:
                        _set_dotted(trial, target, copy.deepcopy(value))
                    except KeyError:
                        fail(f"overrides[{n}].set.{key}", "not a key of a trial; fix: use recipe.*, "
                             "method.<hparam>, backbone.kwargs.*, dataset.*")
        try:
            config = TrialConfig.model_validate(trial)
        except ValidationError as err:
            for line in format_validation_error(str(path), err).splitlines():
                fail(f"overrides (trial {ds.key}/{bb.name}/{mc.display}/seed {seed})", line.split(": ", 1)[1])
            continue
        try:
            create_method(config.method, **config.hparams)
        except (TypeError, ValueError) as err:
            fail(f"methods[{k}]", f"{err}")
            continue
        trials.append(config)
    if problems:
        raise SuiteError("\n".join(problems))
    return trials


def _with_normalisation(hparams: dict[str, Any], cls: type, info: Any) -> dict[str, Any]:
    """A method that de-normalises images (PuzzleMix's colour term) gets the dataset's own mean/std.

    The reference guesses them from the image width (CIFAR statistics below 64 px, else ImageNet's), which is
    wrong for any other dataset; a suite can still set them explicitly.
    """
    from mixbench.methods.registry import method_hparam_names

    accepted = method_hparam_names(cls)
    if "mean" in accepted and "std" in accepted and hparams.get("mean") is None and hparams.get("std") is None:
        return {**hparams, "mean": list(info.mean), "std": list(info.std)}
    return hparams


def parse_data_roots(values: list[str] | None, suite: Suite) -> dict[str, str]:
    """--data-root NAME=PATH (any suite) or a bare PATH (a suite with one dataset)."""
    roots: dict[str, str] = {}
    names = [d.key for d in suite.datasets]  # the label where a dataset has one
    for value in values or []:
        if "=" in value:
            name, _, root = value.partition("=")
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise SuiteError(f"--data-root {value}: the suite has no dataset {name!r}; fix: {hint}name one of "
                                 f"{', '.join(names)}, e.g. --data-root {(close or names)[0]}={root}")
            roots[name] = root
        elif len(suite.datasets) == 1:
            roots[suite.datasets[0].key] = value
        else:
            names = ", ".join(d.key for d in suite.datasets)
            raise SuiteError(f"--data-root {value}: the suite has several datasets ({names}); "
                             f"fix: write --data-root NAME={value}")
    return roots
