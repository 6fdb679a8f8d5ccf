"""The evaluate stage: metrics beyond top-1 from a trained trial's final weights. It reads checkpoints and writes
records; it never trains.

For every model a trial evaluates (AutoMix: the EMA and the online encoder) on the whole val split:
* clean: top-1 and calibration (ECE 15/10 bins, MCE, NLL, Brier, temperature scaling; `evaluation.calibration`),
* corruptions: top-1 under each requested Hendrycks corruption and severity (`evaluation.corruptions`,
  `severities`) at the parameters of CIFAR-10-C, Tiny-ImageNet-C or ImageNet-C, chosen by the size of the val
  images (`corruptions.protocol_for`), on corrupted sets cached in `<results root>/.cache/corruptions/` and
  shared by every trial,
* occlusion: top-1 with a fraction of the image's patches dropped (`occlusion`, `occlusion_grid`),
* FGSM: top-1 on adversarial images at ε (`fgsm`, `fgsm_epsilon`) in pixel space.

Everything measured goes to `robustness.json` in the trial folder, rewritten atomically after each part, so an
interrupted evaluation resumes at the part it was doing, and a part already there is never measured twice
(its key names what it depends on: corruption version, protocol and seed, occlusion grid, ε). Results of another
checkpoint (the trial trained further) are dropped. When every requested part is there, `record.json` gets the
summary (`evaluation`: per model) and `time_eval_s`, the evaluation's own seconds, apart from training time.

It runs at the end of a trial (the engine calls `evaluate_trial` with the trained objects) and from the
command line, `mixbench evaluate SUITE_OR_RESULTS`, on finished trials from their `last.pt`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mixbench.results import atomic_write_text, now, read_record, try_read_record, write_record
from mixbench.suite import EvaluationConfig

if TYPE_CHECKING:
    from mixbench.engine import Trial
    from mixbench.suite import TrialConfig

ROBUSTNESS = "robustness.json"


def cache_root(trial_dir: Path) -> Path:
    """`<results root>/.cache/corruptions`: trials live in <results root>/<suite>/<trial>/ (cost.py's cache too)."""
    return trial_dir.resolve().parent.parent / ".cache" / "corruptions"


def read_robustness(trial_dir: Path) -> dict[str, Any]:
    path = trial_dir / ROBUSTNESS
    return json.loads(path.read_text()) if path.is_file() else {}


# ---- one pass of a model over a set of uint8 images -----------------------------------------------------------


class Passes:
    """The val split of one trial (uint8, in file order) and how to run a model on it or its variants."""

    def __init__(self, trial: Trial, images: np.ndarray, labels: np.ndarray, options: EvaluationConfig):
        self.trial, self.options = trial, options
        self.images, self.labels = images, torch.from_numpy(labels).long()
        recipe = trial.config.recipe
        self.batch_size = recipe.eval_batch_size or recipe.batch_size
        self.device, self.augment, self.amp = trial.device, trial.eval_augment, recipe.amp

    def batches(self, images: np.ndarray):
        for start in range(0, len(images), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + self.batch_size])).to(self.device)
            yield start, x, self.labels[start:start + self.batch_size].to(self.device)

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        from mixbench.engine import autocast

        with autocast(self.device, self.amp):
            return model(x).float()

    @torch.no_grad()
    def logits(self, model: nn.Module, images: np.ndarray, occlusion: tuple[int, float] | None = None) -> torch.Tensor:
        from mixbench.evaluation.occlusion import occlude, patch_mask

        gen = torch.Generator().manual_seed(self.options.seed)
        out = []
        for _, x, _ in self.batches(images):
            x = self.augment(x, None)
            if occlusion is not None:
                x = occlude(x, patch_mask(len(x), x.shape[-1], *occlusion, gen))
            out.append(self.forward(model, x).cpu())
        return torch.cat(out)

    def top1(self, logits: torch.Tensor) -> float:
        return 100.0 * float(logits.argmax(dim=1).eq(self.labels).float().mean())

    def fgsm(self, model: nn.Module, epsilon: float) -> dict[str, float]:
        from mixbench.evaluation.fgsm import fgsm_pixels
        from mixbench.evaluation.pixels import normalise, to_pixels

        correct, loss_clean, loss_adv = 0.0, 0.0, 0.0
        for _, x, y in self.batches(self.images):
            pixels = to_pixels(x, self.augment)
            adversarial = fgsm_pixels(model, pixels, y, self.augment, epsilon)
            with torch.no_grad():
                clean_logits = self.forward(model, normalise(pixels, self.augment))
                adv_logits = self.forward(model, normalise(adversarial, self.augment))
            loss_clean += float(F.cross_entropy(clean_logits, y, reduction="sum"))
            loss_adv += float(F.cross_entropy(adv_logits, y, reduction="sum"))
            correct += float(adv_logits.argmax(dim=1).eq(y).sum())
        n = len(self.labels)
        return {"top1": 100.0 * correct / n, "loss_clean": loss_clean / n, "loss_adv": loss_adv / n}


# ---- the parts a request consists of ---------------------------------------------------------------------------


def corrupted_size(config: TrialConfig) -> int:
    """The side of the val images the corruptions see (what `clean_split` reads): an in-memory dataset's own, a
    file dataset's eval view at the trial's resolution."""
    from mixbench.check import trial_image_size

    info = config.dataset.info()  # the trial's own (an imagefolder's size comes from its tree)
    return info.image_size if info.in_memory else trial_image_size(config)


def corruption_protocol(config: TrialConfig, options: EvaluationConfig) -> str | None:
    """The corruption protocol of the trial's val images, by their size; None when `options` asks for none."""
    from mixbench.evaluation.corruptions import protocol_for

    return protocol_for(corrupted_size(config)) if options.corruption_names else None


def corruption_key(options: EvaluationConfig, protocol: str, name: str, severity: int) -> str:
    from mixbench.evaluation.corruptions import version_tag

    return f"corruption/{version_tag(protocol)}/s{options.seed}/{name}/{severity}"


def part_keys(options: EvaluationConfig, protocol: str | None) -> list[str]:
    """The parts `options` asks for, each key naming everything its value depends on (beyond the weights);
    `protocol` is the corruption protocol of the trial's images (`corruption_protocol`)."""
    keys = [f"clean/s{options.seed}"]
    keys += [corruption_key(options, protocol, name, severity)
             for name in options.corruption_names for severity in options.severities]
    keys += [f"occlusion/s{options.seed}/g{options.occlusion_grid}/{fraction:g}" for fraction in options.occlusion]
    if options.fgsm:
        keys.append(f"fgsm/{options.fgsm_epsilon:.6g}")
    return keys


def measure(passes: Passes, model: nn.Module, key: str, corrupted) -> dict[str, Any]:
    from mixbench.evaluation.calibration import calibration_report

    kind, *rest = key.split("/")
    if kind == "clean":
        logits = passes.logits(model, passes.images)
        return {"top1": passes.top1(logits), **calibration_report(logits, passes.labels, passes.options.seed)}
    if kind == "corruption":
        name, severity = rest[-2], int(rest[-1])
        return {"top1": passes.top1(passes.logits(model, corrupted.get(name, severity)))}
    if kind == "occlusion":
        grid, fraction = int(rest[1][1:]), float(rest[2])
        return {"top1": passes.top1(passes.logits(model, passes.images, occlusion=(grid, fraction)))}
    if kind == "fgsm":
        return passes.fgsm(model, float(rest[0]))
    raise ValueError(f"unknown evaluation part {key}")


def summarize(parts: dict[str, Any], options: EvaluationConfig, protocol: str | None) -> dict[str, Any]:
    """One model's summary for the record, from its parts (only those `options` asks for)."""
    clean = parts[f"clean/s{options.seed}"]
    out: dict[str, Any] = {"top1": clean["top1"]}
    if options.calibration:
        out.update({k: clean[k] for k in ("ece", "ece_10", "mce", "nll", "brier", "ece_ts", "temperature")})
    by_name = {}
    for name in options.corruption_names:
        values = [parts[corruption_key(options, protocol, name, s)]["top1"] for s in options.severities]
        by_name[name] = sum(values) / len(values)
    if by_name:
        out["corruption_top1"] = sum(by_name.values()) / len(by_name)
        out["corruption_top1_by_name"] = by_name
        out["corruption_severities"] = list(options.severities)
        out["corruption_protocol"] = protocol
    if options.occlusion:
        out["occlusion_top1"] = {f"{f:g}": parts[f"occlusion/s{options.seed}/g{options.occlusion_grid}/{f:g}"]["top1"]
                                 for f in options.occlusion}
    if options.fgsm:
        fgsm = parts[f"fgsm/{options.fgsm_epsilon:.6g}"]
        out.update({"fgsm_top1": fgsm["top1"], "fgsm_epsilon": options.fgsm_epsilon})
    return out


# ---- a trial -----------------------------------------------------------------------------------------------------


def evaluate_trial(trial: Trial, options: EvaluationConfig | None = None, log=None, jobs: int = 1) -> bool:
    """Measure what `options` (default: the trial's `evaluation`) asks for and is not yet in robustness.json;
    then write the record's summary. Returns whether anything was measured. Rank 0 only (one process);
    `jobs` processes make the corrupted sets not yet cached."""
    from mixbench.evaluation.corrupted_sets import CorruptedSets, clean_split

    options = options or trial.config.evaluation
    out_dir = trial.out_dir
    checkpoint = {"epoch": trial.epoch, "step": trial.step}
    state = read_robustness(out_dir)
    if state.get("checkpoint") != checkpoint:
        state = {}
    state.update(checkpoint=checkpoint, trial_id=trial.config.trial_id)
    state.setdefault("parts", {})
    state.setdefault("seconds", 0.0)
    models = trial.method.eval_models(trial.backbone)
    protocol = corruption_protocol(trial.config, options)
    keys = part_keys(options, protocol)
    todo = [(name, key) for name in models for key in keys if key not in state["parts"].get(name, {})]
    if todo:  # begun: a run stopped before the first part is done finishes it (runner.local.evaluation_cut_short)
        atomic_write_text(out_dir / ROBUSTNESS, json.dumps(state, indent=1) + "\n")
    passes = corrupted = None
    for name, key in todo:
        start = time.perf_counter()
        if passes is None:
            images, labels = clean_split(trial.val_set)
            passes = Passes(trial, images, labels, options)
            corrupted = CorruptedSets(cache_root(out_dir), trial.config.dataset.name, images, labels, options.seed)
            if protocol is not None and corrupted.protocol != protocol:  # the keys would name another protocol
                raise RuntimeError(f"{out_dir.name}: the val images are {images.shape[-1]} px, for corruption "
                                   f"protocol {corrupted.protocol}, but the trial's config says {protocol}")
            wanted = dict.fromkeys((k.split("/")[-2], int(k.split("/")[-1])) for _, k in todo
                                   if k.startswith("corruption/"))
            corrupted.prepare(list(wanted), jobs)
        model = models[name]
        was_training = model.training
        model.eval()
        try:
            value = measure(passes, model, key, corrupted)
        finally:
            model.train(was_training)
        state["parts"].setdefault(name, {})[key] = value
        state["seconds"] += time.perf_counter() - start
        state["updated_at"] = now()
        atomic_write_text(out_dir / ROBUSTNESS, json.dumps(state, indent=1) + "\n")
        if log:
            log(f"{out_dir.name}: {name} {key}: top-1 {value['top1']:.2f}")
    record = read_record(out_dir)
    summary = {name: summarize(state["parts"][name], options, protocol) for name in models}
    if record is not None and (todo or record.evaluation != _jsonable(summary)):
        record = record.model_copy(update={"evaluation": _jsonable(summary), "time_eval_s": state["seconds"]})
        write_record(out_dir, record)
    return bool(todo)


def after_training(trial: Trial) -> None:
    """The engine's call at the end of a trial. An evaluation that fails is reported and leaves the trained
    trial done (its record says so; `mixbench evaluate` measures it again)."""
    try:
        evaluate_trial(trial)
    except Exception as err:  # whatever broke, the training it measures is finished and recorded
        print(f"mixbench: the evaluation of {trial.out_dir.name} failed ({type(err).__name__}: {err}); the trial "
              f"stays done; measure it again with: mixbench evaluate {trial.out_dir.parent}", file=sys.stderr)


def evaluation_problems(suite, trials, path: str) -> list[str]:
    """What `mixbench check` reports about the suite's evaluation block before anything runs."""
    from mixbench.evaluation.corruptions import frost_dir, frost_max_size, protocol_for

    options, problems = suite.evaluation, []
    if "frost" not in options.corruption_names:
        return problems
    try:
        frost_dir()
    except FileNotFoundError as err:
        return [f"{path}: evaluation.corruptions: {err}"]
    for trial in trials:  # every size has its protocol; only frost has a limit (a crop of the frost photographs)
        size = corrupted_size(trial)
        protocol = protocol_for(size)
        line = (f"{path}: evaluation.corruptions: frost crops Hendrycks' frost photographs, at most "
                f"{frost_max_size(protocol)} px under the {protocol} protocol, but {trial.dataset.key} images are "
                f"{size} px; fix: leave frost out of evaluation.corruptions")
        if size > frost_max_size(protocol) and line not in problems:
            problems.append(line)
    return problems


def _jsonable(value: Any) -> Any:
    """What the value reads back as from JSON (so an unchanged summary compares equal and is not rewritten)."""
    return json.loads(json.dumps(value, allow_nan=True))


# ---- finished trials of a suite or results folder ---------------------------------------------------------------


def evaluate_finished(trial_dirs: list[Path], options: EvaluationConfig | None = None, corruptions: str | None = None,
                      data_roots: dict[str, str] | None = None, log=print, jobs: int = 1) -> dict[str, int]:
    """`mixbench evaluate`: every done trial of `trial_dirs` from its last.pt, measuring what `options` (default:
    each trial's own `evaluation`) asks for, with `corruptions` ("all", "none" or "a,b") in place of its choice of
    corruptions; `jobs` processes make the corrupted sets. Returns counts: evaluated, up to date, skipped."""
    import yaml

    from mixbench.engine import CHECKPOINT, Trial, TrialBusy, TrialFailed, trial_lock
    from mixbench.suite import TrialConfig

    counts = {"evaluated": 0, "up to date": 0, "skipped": 0}
    for trial_dir in trial_dirs:
        record, damage = try_read_record(trial_dir)
        if damage is not None:
            counts["skipped"] += 1
            log(f"{trial_dir.name}: skipped ({damage})")
            continue
        if record is None or record.status != "done" or not (trial_dir / CHECKPOINT).is_file():
            counts["skipped"] += 1
            log(f"{trial_dir.name}: skipped ({record.status if record else 'no record'}; only finished trials with "
                f"their {CHECKPOINT} are evaluated)")
            continue
        config = TrialConfig.model_validate(yaml.safe_load((trial_dir / "config.yaml").read_text()))
        options = with_corruptions(options or config.evaluation, corruptions)
        if data_roots and config.dataset.name in data_roots:
            config = config.model_copy(update={"dataset": config.dataset.model_copy(
                update={"root": data_roots[config.dataset.name]})})
        if _up_to_date(trial_dir, record, config, options):
            counts["up to date"] += 1
            continue
        try:
            with trial_lock(trial_dir):
                trial = Trial(config, trial_dir)
                load_weights(trial, trial_dir / CHECKPOINT)
                evaluate_trial(trial, options, log=log, jobs=jobs)
        except (TrialBusy, TrialFailed) as err:  # running elsewhere; a checkpoint of another trial
            counts["skipped"] += 1
            log(f"{trial_dir.name}: skipped ({err})")
            continue
        counts["evaluated"] += 1
    return counts


def load_weights(trial: Trial, path: Path) -> None:
    """The trained weights (backbone and method, e.g. AutoMix's EMA) and how far training went; nothing else of
    the checkpoint (a trial trained by N processes is evaluated by one: `Trial.restore` would refuse)."""
    from mixbench import checkpoint
    from mixbench.engine import TrialFailed

    try:  # weights_only: a checkpoint planted in a shared results folder must not run code
        state = checkpoint.load(path, map_location=trial.device)
    except checkpoint.CheckpointError as err:
        raise TrialFailed(str(err)) from None
    if state is None:
        raise TrialFailed(f"{path}: no checkpoint to evaluate")
    if state.get("trial_id") != trial.config.trial_id:
        raise TrialFailed(f"{path} belongs to trial {state.get('trial_id')}, not {trial.config.trial_id}")
    trial.backbone.load_state_dict(state["model"])
    trial.method.load_state_dict(state["method"])
    trial.epoch, trial.step = state["epoch"], state["step"]


def _up_to_date(trial_dir: Path, record, config: TrialConfig, options: EvaluationConfig) -> bool:
    """Every requested part measured and summarised, without building the trial (cheap: reads two files, and the
    dataset's image size when corruptions are asked for)."""
    state = read_robustness(trial_dir)
    evaluation = record.evaluation
    if not state or not evaluation or state.get("checkpoint", {}).get("epoch") != record.epochs_done:
        return False
    protocol = corruption_protocol(config, options)
    keys = part_keys(options, protocol)
    if set(evaluation) != set(state["parts"]) or any(k not in parts for parts in state["parts"].values() for k in keys):
        return False
    return all(evaluation[name] == _jsonable(summarize(parts, options, protocol))
               for name, parts in state["parts"].items())


def with_corruptions(options: EvaluationConfig, corruptions: str | None) -> EvaluationConfig:
    """`--corruptions all|none|a,b` in place of the suite's choice (validated the same way)."""
    if corruptions is None:
        return options
    from pydantic import ValidationError

    from mixbench.suite import SuiteError

    value: str | list[str] = corruptions if corruptions in ("all", "none") else corruptions.split(",")
    try:
        return EvaluationConfig.model_validate({**options.model_dump(), "corruptions": value})
    except ValidationError as err:
        raise SuiteError(f"--corruptions {corruptions}: {err.errors()[0]['msg']}") from None

