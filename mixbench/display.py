"""The network a model-aware method mixes with in a gallery: a trial's, or a small one trained for the picture.

PuzzleMix's saliency and AutoMix's Mix Block mean something only behind a network that has learned something:
with a randomly initialised one every PuzzleMix mask is all 1, all 0.5 or all 0 (the saliency is flat), so a
gallery made that way shows Mixup, not PuzzleMix. A method whose class sets `mixes_with_model` is therefore
shown with one of:

* `from_trial(TRIAL_DIR)`: the checkpoint (`last.pt`) of a trial: its backbone and, when the trial ran the same
  method, the method's own weights too (AutoMix: the Mix Block and the momentum encoder). A method without weights
  of its own (PuzzleMix) can borrow any trial's backbone, a vanilla one included.
* `display_network(...)`: a short trial of the method itself on the chosen dataset, run by the engine like any
  trial (same seed, same determinism): `DisplayBudget` steps of its batch on a small backbone. It is cached under
  the cache folder by its trial id, a hash of everything that shapes it (dataset, seed, image size, backbone,
  method and hyper-parameters, budget), so the second gallery of a dataset and seed trains nothing. It is trained
  in a temporary folder and renamed into place when done: an interrupted training never leaves a cache entry.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from mixbench.methods.base import Method

DISPLAY_BACKBONE = "resnet_tiny_cifar"  # a CIFAR stem: stage maps at full resolution, so AutoMix masks are 8×8 at 32 px


class DisplayNetworkError(ValueError):
    """A trial folder that cannot give the gallery its network; the message names the fix."""


@dataclass(frozen=True)
class DisplayBudget:
    """How long a display network trains: `steps` SGD steps of `batch_size` images, over `epochs` epochs (the
    dataset is cut to the images those steps need, the same per class). The default, 240 steps of 32 images
    (7 680 images seen) on resnet_tiny_cifar, is a few CPU-minutes per method (PuzzleMix's graph cuts
    and AutoMix's extra passes cost 2-3× a vanilla step; seconds on a GPU), paid once per dataset, seed and
    method thanks to the cache; enough for the saliency to follow the objects (val top-1 ≈ 55-60 % on
    Fashion-MNIST)."""

    steps: int = 240
    batch_size: int = 32
    epochs: int = 3
    val_images: int = 200  # the val images its top-1 is measured on, for the caption

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.epochs, self.val_images) <= 0:
            raise ValueError(f"display budget: steps, batch_size, epochs and val_images must be > 0; got {self}")


DEFAULT_BUDGET = DisplayBudget()


@dataclass
class DisplayNetwork:
    """A backbone and the method set up on it (with its own weights, if any), and where they come from."""

    backbone: nn.Module
    method: Method
    dataset: str
    data_root: str | None
    image_size: int
    backbone_name: str
    caption: str  # which network this is, in words, for the gallery


def default_cache_dir() -> Path:
    """$MIXBENCH_CACHE/display, else $XDG_CACHE_HOME/mixbench/display, else ~/.cache/mixbench/display."""
    if os.environ.get("MIXBENCH_CACHE"):
        return Path(os.environ["MIXBENCH_CACHE"]) / "display"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mixbench" / "display"


def method_hparams(name: str, dataset: str, hparams: dict[str, Any] | None) -> dict[str, Any]:
    """The hyper-parameters a suite would give method `name` on `dataset`: the card's values for the dataset's
    family, then the dataset's own mean/std where the method de-normalises, then `hparams`."""
    from mixbench.data import dataset_info
    from mixbench.methods.cards import card_defaults
    from mixbench.methods.registry import get_method_class, method_hparam_names

    info = dataset_info(dataset)
    cls = get_method_class(name)
    resolved = {**card_defaults(cls.name or name, info.family), **(hparams or {})}
    accepted = method_hparam_names(cls)
    if "mean" in accepted and "std" in accepted and resolved.get("mean") is None and resolved.get("std") is None:
        resolved.update(mean=list(info.mean), std=list(info.std))
    return resolved


def display_hparams(name: str, dataset: str, hparams: dict[str, Any] | None) -> dict[str, Any]:
    """`method_hparams`, with the card's `display` values for short runs (AutoMix: a faster EMA) under `hparams`."""
    from mixbench.methods.cards import load_card
    from mixbench.methods.registry import get_method_class

    cls = get_method_class(name)
    short_run = (load_card(cls.name or name) or {}).get("display") or {}
    return method_hparams(name, dataset, {**short_run, **(hparams or {})})


def display_trial(name: str, dataset: str, data_root: str | Path | None, seed: int, image_size: int,
                  hparams: dict[str, Any] | None = None, backbone: str = DISPLAY_BACKBONE,
                  budget: DisplayBudget = DEFAULT_BUDGET, backbone_kwargs: dict[str, Any] | None = None):
    """The TrialConfig of the display network of method `name` on `dataset` (see the module docstring)."""
    from mixbench.data import dataset_info
    from mixbench.methods.registry import get_method_class
    from mixbench.suite import TrialConfig

    info = dataset_info(dataset)
    cls = get_method_class(name)
    steps_per_epoch = math.ceil(budget.steps / budget.epochs)
    per_class = math.ceil(steps_per_epoch * budget.batch_size / info.num_classes)
    return TrialConfig.model_validate({
        "suite": "display",
        "dataset": {"name": dataset, "root": None if data_root is None else str(data_root),
                    "limit_per_class": per_class,
                    "val_limit_per_class": max(1, math.ceil(budget.val_images / info.num_classes))},
        "backbone": {"name": backbone, "kwargs": backbone_kwargs or {}},
        "method": name, "method_label": cls.name or name, "method_version": cls.version,
        "hparams": display_hparams(name, dataset, hparams), "seed": seed,
        "recipe": {"epochs": budget.epochs, "batch_size": budget.batch_size, "image_size": image_size,
                   "num_workers": 0, "last_n": 1,
                   "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
                   "schedule": {"name": "cosine"}},
    })


def display_network(name: str, dataset: str, data_root: str | Path | None, seed: int, image_size: int,
                    hparams: dict[str, Any] | None = None, backbone: str = DISPLAY_BACKBONE,
                    budget: DisplayBudget = DEFAULT_BUDGET, cache_dir: Path | None = None,
                    log: Callable[[str], None] | None = None,
                    backbone_kwargs: dict[str, Any] | None = None) -> DisplayNetwork:
    """Method `name` trained for `budget` on `dataset` (from the cache if it was trained before)."""
    from mixbench.engine import CHECKPOINT, run_trial
    from mixbench.results import read_record

    config = display_trial(name, dataset, data_root, seed, image_size, hparams, backbone, budget, backbone_kwargs)
    built = ", ".join(f"{k}={v}" for k, v in config.backbone.kwargs.items())
    backbone = f"{backbone} ({built})" if built else backbone  # for the log and the caption
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / config.dirname
    record = read_record(final) if final.is_dir() else None
    if record is None or record.status != "done" or not (final / CHECKPOINT).is_file():
        if log:
            log(f"training the display network of {name} on {dataset}: {budget.steps} steps of {budget.batch_size} "
                f"images on {backbone} (seed {seed}), cached in {final}")
        partial = cache / f".partial-{config.dirname}-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        run_trial(config, partial)
        shutil.rmtree(final, ignore_errors=True)  # an entry that is not done is not worth keeping
        try:
            os.replace(partial, final)
        except OSError:  # another process put the same network there first: it is identical (same trial id)
            shutil.rmtree(partial, ignore_errors=True)
    network = from_trial(final, name, data_root=data_root)
    top1 = read_record(final).top1
    network.caption = (f"mixed with a display network: {backbone} trained by {config.method_label} for "
                       f"{budget.steps} steps of {budget.batch_size} {dataset} images (seed {seed}; val top-1 "
                       f"{top1:.0f}% on {config.dataset.val_limit_per_class * _classes(dataset)} images)")
    return network


def _classes(dataset: str) -> int:
    from mixbench.data import dataset_info

    return dataset_info(dataset).num_classes


def from_trial(trial_dir: str | Path, name: str, hparams: dict[str, Any] | None = None,
               data_root: str | Path | None = None) -> DisplayNetwork:
    """The backbone of the trial in `trial_dir` at its last checkpoint, with method `name` set up on it.

    Method `name` is the trial's own method (its weights are restored, `hparams` may change how it mixes), or a
    method without weights of its own (it gets its card's hyper-parameters and the trial's backbone).
    """
    from mixbench.data import dataset_info
    from mixbench.engine import CHECKPOINT
    from mixbench.methods.registry import create_method, get_method_class
    from mixbench.models import create_backbone
    from mixbench.suite import TrialConfig

    trial_dir = Path(trial_dir)
    if not (trial_dir / "config.yaml").is_file():
        raise DisplayNetworkError(f"--from {trial_dir}: no config.yaml there; fix: pass a trial folder, "
                                  f"results/SUITE/DATASET-BACKBONE-METHOD-sSEED-ID, holding config.yaml and last.pt")
    if not (trial_dir / CHECKPOINT).is_file():
        raise DisplayNetworkError(f"--from {trial_dir}: no checkpoint {CHECKPOINT} (the trial has not finished an "
                                  f"epoch); fix: let it run, or pass a finished trial")
    config = TrialConfig.model_validate(yaml.safe_load((trial_dir / "config.yaml").read_text()))
    info = dataset_info(config.dataset.name)
    size = config.recipe.image_size or info.image_size
    state = torch.load(trial_dir / CHECKPOINT, map_location="cpu", weights_only=False)
    backbone = create_backbone(config.backbone.name, num_classes=info.num_classes, image_size=size,
                               in_chans=info.in_chans, **config.backbone.kwargs)
    backbone.load_state_dict(state["model"])
    own = get_method_class(name) is get_method_class(config.method)
    if own:
        method = create_method(config.method, **{**config.hparams, **(hparams or {})})
    else:
        method = create_method(name, **method_hparams(name, config.dataset.name, hparams))
    method.setup(backbone, info.num_classes)
    if own:
        try:
            method.load_state_dict(state["method"])
        except RuntimeError as err:
            raise DisplayNetworkError(f"--from {trial_dir}: the {name} weights do not fit the hyper-parameters "
                                      f"given ({str(err).splitlines()[0]}); fix: drop the --hparam that changes "
                                      f"the method's shape") from None
    elif method.state_dict():
        parts = ", ".join(sorted({key.split(".")[0] for key in method.state_dict()}))
        raise DisplayNetworkError(f"--from {trial_dir}: {name} mixes with weights of its own ({parts}) that a "
                                  f"{config.method} trial never trained; fix: pass a {name} trial")
    backbone.train()  # as the engine hands it to the method
    epoch, epochs = state.get("epoch", 0), config.recipe.epochs
    history = state.get("history") or [{}]
    top1 = history[-1].get("top1")
    caption = (f"mixed with the network of trial {trial_dir.name}: {config.backbone.name} trained by "
               f"{config.method_label} for {epoch}/{epochs} epochs"
               + (f" (val top-1 {top1:.1f}%)" if top1 is not None else ""))
    return DisplayNetwork(backbone=backbone, method=method, dataset=config.dataset.name,
                          data_root=str(data_root) if data_root is not None else config.dataset.root,
                          image_size=size, backbone_name=config.backbone.name, caption=caption)
