"""One trial: build data, backbone and method, train with per-epoch eval, checkpoint, resume, record.

`run_trial(config, out_dir)` is what every executor calls (local subprocess, Slurm task, DDP rank). It is
method-agnostic: it optimizes the backbone's and the method's parameters, calls `method.training_loss`,
back-propagates (unless the method did), steps, then calls `method.after_step`.

Determinism: model initialisation comes from `torch.manual_seed(seed)`; every draw of the method and of the
on-device augmentation comes from one `torch.Generator` owned by the trial; the data order of an epoch is a
function of (seed, epoch). The checkpoint at the end of each epoch holds the model, optimizer, step, method
state and every RNG state, so on CPU a resumed run equals an uninterrupted one bit for bit.

Several processes (DDP, `gpus_per_trial: N`). Each process trains on its 1/N share of every global batch
(`recipe.batch_size` is the global batch; the lr is defined for it). The choices, recorded in every record:
* `mix_scope: local`: a process mixes the images of its own share; partners never cross processes (the
  reference's default; its cross-GPU shuffle is off in every config mixbench reproduces).
* `mix_draws: shared`: the method's draws (λ, permutation, boxes, AutoMix's two λ) come from the trial generator,
  in the same state on every process, so every process draws the same values, as one process would for its
  global batch. Augmentation (crop and flip offsets) and the global RNG (dropout, drop-path) are drawn per
  process and per step from (seed, step, rank), so the processes' shares are augmented independently and a
  resumed run needs no per-process RNG state.
* `batch_norm`: `per_process` (statistics over each process's share, as the reference trains) or `synchronized`
  (SyncBatchNorm over the global batch; CUDA only). Running statistics are rank 0's, broadcast before each
  evaluation and checkpoint.
* Gradients are averaged over the processes, the method's own parameters included (`distributed.GradientSync`),
  and the parameters are checked equal on every process after each epoch; metrics are reduced over processes.
* The checkpoint is written by rank 0. A trial resumes with another N if its steps per epoch stay the same (then
  the global batches are the same images); otherwise it refuses, saying why. With another N it is sound but not
  bit-exact: per-process BatchNorm statistics and the per-process augmentation draws change with N.

Preemption. With `stop_requested` (the Slurm executor's preemption signal), the trial stops after the step it is
asked in (one process) or at the next check point, every `CHECK_EVERY` steps, where the processes agree on it
(several), writes a mid-epoch checkpoint (the step within the epoch and the
epoch's partial logs included) and raises `Preempted`; the resumed run skips the epoch's trained batches and
equals an uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from mixbench import checkpoint
from mixbench import distributed as dist
from mixbench.results import (
    DamagedFile,
    TrialRecord,
    environment,
    machine_load,
    now,
    read_metrics,
    summarize,
    try_read_record,
    write_config,
    write_metrics,
    write_record,
)
from mixbench.suite import TrialConfig
from mixbench.train_step import LossWatch, autocast, prepare_backbone, train_step

CHECKPOINT = checkpoint.LATEST
# Every this many steps (and at the end of each epoch) the trial reads its running loss back from the device:
# it fails on a non-finite loss, naming the step, several processes agree on a requested stop, and rank 0
# prints a progress line. Between those points a step never waits for the device.
CHECK_EVERY = int(os.environ.get("MIXBENCH_LOG_EVERY", "50"))


class TrialFailed(RuntimeError):
    """The trial cannot go on (non-finite loss, bad data); its message becomes the record's reason."""


class TrialBusy(RuntimeError):
    """Another process holds this trial's lock: it is running elsewhere (a second submission, a requeue)."""


EXIT_BUSY = 3


@contextlib.contextmanager
def trial_lock(out_dir: Path):
    """An exclusive claim on the trial directory, so one trial never runs twice at once.

    flock is released by the kernel when the process dies, so a killed trial never leaves a stale claim.
    """
    import fcntl

    with open(out_dir / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrialBusy(f"{out_dir} is being run by another process") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def trial_is_locked(out_dir: Path) -> bool:
    """Whether some process holds the trial's lock: it is running (here, or on a node sharing the files)."""
    if not out_dir.is_dir():
        return False
    try:
        with trial_lock(out_dir):
            return False
    except TrialBusy:
        return True


class Interrupted(BaseException):
    """SIGTERM/SIGINT: stop at once; the last checkpoint stays for resume."""


class Preempted(Interrupted):
    """The scheduler asked the trial to stop (preemption, time limit); a checkpoint of the step where every
    process stopped is on disk and the record says `interrupted`."""


@dataclass
class EpochProgress:
    """How far the current epoch went: what a mid-epoch checkpoint needs to resume it exactly."""

    batches: int = 0  # batches of this epoch already trained
    sums: dict[str, float] = field(default_factory=dict)  # per-step logs summed so far
    lr: float = 0.0
    seconds: float = 0.0  # training seconds spent in this epoch, over all sessions


@dataclass(eq=False)
class TrialState:
    """Where a trial stands: what a checkpoint holds besides the weights, the optimizer and the RNG states.

    Saved with `asdict`, so every field is a number, a string, or a list or dict of those: the checkpoint
    loads without unpickling code. A `Trial` is its state plus the live objects built from its config.
    """

    trial_id: str = ""
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    steps_per_epoch: int = 0
    world_sizes: list[int] = field(default_factory=list)  # process counts of the sessions that trained it
    epoch_progress: EpochProgress = field(default_factory=EpochProgress)  # of the epoch under way
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics row per finished epoch
    elapsed: float = 0.0  # training + eval seconds over all sessions
    train_seconds: float = 0.0
    train_images: int = 0
    started_at: str = ""


def process_seed(seed: int, step: int, rank: int, stream: str) -> int:
    """The seed of one process's `stream` at one step: per-process draws that need no state to resume."""
    digest = hashlib.blake2b(f"mixbench-{stream}:{seed}:{step}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # non-negative int64


def select_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", dist.local_device_index() if dist.world_size() > 1 else 0)
    return torch.device("cpu")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@torch.no_grad()
def evaluate(model: nn.Module, batches, augment, device: torch.device, amp: bool) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) over the whole split, summed across DDP ranks."""
    was_training = model.training
    model.eval()
    correct1 = correct5 = total = 0.0
    for images, labels in batches:
        x = augment(images.to(device, non_blocking=True), None)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        k = min(5, logits.shape[1])
        top = logits.float().topk(k, dim=1).indices
        hits = top.eq(labels[:, None])
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        total += labels.numel()
    model.train(was_training)
    correct1, correct5, total = dist.sum_floats([correct1, correct5, total], device)
    return {"top1": 100.0 * correct1 / max(total, 1), "top5": 100.0 * correct5 / max(total, 1)}


class Trial(TrialState):
    """One trial being trained: its `TrialState` and the data, models and optimizer built from its config;
    `run()` drives it to the end."""

    def __init__(self, config: TrialConfig, out_dir: Path, stop_requested: Callable[[], bool] | None = None):
        from mixbench.data import device_augment, load_split
        from mixbench.methods.registry import create_method
        from mixbench.models import create_backbone

        self.config, self.out_dir = config, out_dir
        self.stop_requested = stop_requested
        self.device = select_device()
        self.rank, self.world = dist.rank(), dist.world_size()
        recipe = config.recipe
        if recipe.batch_size % self.world:
            raise TrialFailed(f"recipe.batch_size {recipe.batch_size} is not divisible by {self.world} processes")
        self.local_batch = recipe.batch_size // self.world

        ds = config.dataset
        self.info = ds.info()
        self.image_size = recipe.image_size or self.info.image_size
        self.train_set = load_split(ds.name, ds.root, "train", options=ds.options, image_size=self.image_size,
                                    limit_per_class=ds.limit_per_class, seed=config.seed)
        self.val_set = load_split(ds.name, ds.root, "val", options=ds.options, image_size=self.image_size,
                                  limit_per_class=ds.val_limit_per_class, seed=config.seed)
        self.train_augment = device_augment(self.info, train=True, image_size=self.image_size).to(self.device)
        self.eval_augment = device_augment(self.info, train=False, image_size=self.image_size).to(self.device)

        torch.manual_seed(config.seed)  # model initialisation and the global RNG (dropout, drop-path)
        self.backbone = create_backbone(config.backbone.name, num_classes=self.info.num_classes,
                                        image_size=self.image_size, in_chans=self.info.in_chans,
                                        **config.backbone.kwargs).to(self.device)
        self.backbone = prepare_backbone(self.backbone, recipe.channels_last)
        self.method = create_method(config.method, **config.hparams)
        self.method.setup(self.backbone, self.info.num_classes)
        self.method.to(self.device)
        dist.broadcast_state(self.method)  # DDP broadcasts the backbone; the method's own weights start equal too
        self.sync_bn = recipe.sync_bn and self.world > 1  # one process has no other statistics to sync
        try:
            self.model = dist.wrap(self.backbone, self.device, sync_bn=self.sync_bn)  # DDP when world > 1
        except ValueError as err:
            raise TrialFailed(str(err)) from None
        self.grad_sync = dist.GradientSync(self.model, self.backbone, self.method)

        self.optimizer = _build_optimizer(self)
        self.gen = torch.Generator().manual_seed(config.seed)
        TrialState.__init__(self, trial_id=config.trial_id, steps_per_epoch=_num_batches(self),
                            world_sizes=[self.world], started_at=now())
        self.total_steps = self.steps_per_epoch * recipe.epochs
        self.stop_agreed = False  # every process agreed at the end of the epoch to stop after it
        self.env = environment()
        self.load_avg_start = machine_load()

    # ---- checkpoint ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The checkpoint: the TrialState's fields, the weights, the optimizer and every RNG state (tensors)."""
        return {
            **asdict(self),
            "model": self.backbone.state_dict(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def restore(self, path: Path) -> None:
        """Resume from `path` (or the previous epoch's checkpoint when it is torn); nothing there: start afresh."""
        try:
            state = checkpoint.load(path, map_location=self.device)
        except checkpoint.CheckpointError as err:
            raise TrialFailed(str(err)) from None
        if state is None:
            return
        saved = {f.name: state[f.name] for f in fields(TrialState) if f.name in state}
        if saved.get("trial_id") != self.config.trial_id:
            raise TrialFailed(f"{path} belongs to trial {saved.get('trial_id')}, not {self.config.trial_id}; "
                              f"remove it to start this trial afresh")
        saved_world = saved.get("world_sizes", [1])[-1]
        saved_steps = saved.get("steps_per_epoch", self.steps_per_epoch)
        if saved_steps != self.steps_per_epoch:
            raise TrialFailed(
                f"{path} was written by {saved_world} processes with {saved_steps} steps per epoch, but with "
                f"{self.world} an epoch has {self.steps_per_epoch} steps, so the lr schedule and the global batches "
                f"would not line up; fix: resume with {saved_world} processes (resources.gpus_per_trial) or "
                f"remove {path} to start afresh")
        self.backbone.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        sizes = saved.pop("world_sizes", [saved_world])
        for name, value in saved.items():
            setattr(self, name, value)
        self.epoch_progress = EpochProgress(**saved.get("epoch_progress", {}))
        self.world_sizes = sizes + ([self.world] if sizes[-1] != self.world else [])

    # ---- training --------------------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        from mixbench.data import batches
        from mixbench.optim import set_lr

        recipe = self.config.recipe
        self.model.train()
        self.method.train()
        progress = self.epoch_progress
        watch = LossWatch(self.device, progress.sums.get("loss", 0.0))
        asked = False  # a stop was asked since the last check point
        start = time.perf_counter()
        for i, (images, labels) in enumerate(batches(
                self.train_set, self.local_batch, train=True, seed=self.config.seed, epoch=self.epoch,
                num_workers=recipe.num_workers, rank=self.rank, world_size=self.world,
                pin_memory=self.device.type == "cuda")):
            if i < progress.batches:
                continue  # trained before a preemption; an epoch's data order depends only on (seed, epoch)
            lr = set_lr(self.optimizer, self.step, recipe.schedule, self.steps_per_epoch, self.total_steps)
            self.method.set_progress(self.step, self.total_steps)
            x = self.train_augment(images.to(self.device, non_blocking=True), self.augment_generator())
            y = labels.to(self.device, non_blocking=True)
            out = train_step(self.method, self.model, self.backbone, self.optimizer, x, y, self.gen,
                             amp=recipe.amp, channels_last=recipe.channels_last, grad_clip=recipe.grad_clip,
                             grad_sync=self.grad_sync)
            watch.add(out.loss, self.step)
            self.step += 1
            self.train_images += labels.numel() * self.world
            progress.batches += 1
            progress.lr = lr
            for key, value in out.logs.items():
                progress.sums[key] = progress.sums.get(key, 0.0) + value
            asked = asked or (self.stop_requested is not None and self.stop_requested())
            # One process stops at the very step it is asked to; several agree on it at the next check point.
            if (asked and self.world == 1) or self.step % CHECK_EVERY == 0:
                stop = self.check_loss(watch, asked)
                if self.rank == 0 and self.step % CHECK_EVERY == 0:
                    self.print_progress(progress.seconds + time.perf_counter() - start)
                if stop:
                    progress.seconds += time.perf_counter() - start
                    self.preempt()
        self.stop_agreed = self.check_loss(watch, asked)  # honoured after the evaluation (run())
        progress.seconds += time.perf_counter() - start
        seconds, count = progress.seconds, progress.batches
        self.train_seconds += seconds
        logs = dist.mean_dict({f"train_{k}": v / max(count, 1) for k, v in progress.sums.items()}, self.device)
        self.epoch_progress = EpochProgress()
        return {**logs, "lr": progress.lr, "train_seconds": seconds,
                "images_per_sec": count * self.local_batch * self.world / max(seconds, 1e-9)}

    def check_loss(self, watch: LossWatch, asked_to_stop: bool) -> bool:
        """Read the running loss back from the device (one sync): fail on a non-finite loss, naming its step, and
        return whether a stop was asked on any process. Every process calls it at the same steps."""
        reading = watch.read()
        others = {k: v for k, v in self.epoch_progress.sums.items() if k != "loss"}
        self.epoch_progress.sums = {"loss": reading.total, **others}
        nonfinite, stop = dist.any_rank([reading.first_nonfinite_step is not None, asked_to_stop], self.device)
        if nonfinite:
            if reading.first_nonfinite_step is None:
                raise TrialFailed(f"non-finite loss (on another process) at epoch {self.epoch + 1}, "
                                  f"by step {self.step - 1}")
            raise TrialFailed(f"non-finite loss ({reading.first_nonfinite_value}) at epoch {self.epoch + 1}, "
                              f"step {reading.first_nonfinite_step}")
        return stop

    def print_progress(self, seconds: float) -> None:
        """One line on how the epoch goes (an ImageNet epoch is long): where, the mean loss so far, lr, speed."""
        p = self.epoch_progress
        print(f"mixbench: epoch {self.epoch + 1}/{self.config.recipe.epochs}, step {p.batches}/"
              f"{self.steps_per_epoch}, train loss {p.sums['loss'] / max(p.batches, 1):.4f}, lr {p.lr:.4g}, "
              f"{p.batches * self.local_batch * self.world / max(seconds, 1e-9):.0f} images/s", flush=True)

    def augment_generator(self) -> torch.Generator:
        """Where this step's augmentation draws come from; with several processes, also reseeds the global RNG.

        One process: the trial generator, one stream for everything. Several: a generator seeded from (seed, step,
        rank), so each process augments its share independently (the trial generator is in the same state on
        every process and would give every share the same crops), and the global RNG (dropout, drop-path) reseeded
        the same way; neither needs per-process state in the checkpoint, whatever N a resumed run has.
        """
        if self.world == 1:
            return self.gen
        seed, step, rank = self.config.seed, self.step, self.rank
        torch.manual_seed(process_seed(seed, step, rank, "global"))
        return torch.Generator().manual_seed(process_seed(seed, step, rank, "augment"))

    def preempt(self) -> None:
        """Every process agreed to stop after this step: checkpoint it (mid-epoch), record it, and stop."""
        where = f"epoch {self.epoch + 1}, step {self.step}"
        if self.rank == 0:
            checkpoint.save(self.out_dir / CHECKPOINT, self.state())
            self.write_record("interrupted", f"preempted at {where}; resumes from the checkpoint of that step")
            print(f"mixbench: preempted at {where}; checkpoint written", file=sys.stderr, flush=True)
        dist.barrier()  # no process leaves before the checkpoint is on disk
        raise Preempted(f"preempted at {where}")

    def check_processes_agree(self) -> None:
        """After an epoch: every process must hold the same weights, or some gradient was not averaged."""
        diverged = dist.diverged_parameters({"backbone": self.backbone, "method": self.method})
        if diverged:
            raise TrialFailed(
                f"the processes' weights differ after epoch {self.epoch + 1} ({', '.join(diverged[:3])}"
                f"{', ...' if len(diverged) > 3 else ''}): a gradient was not averaged over the processes; fix: the "
                f"method must run the backbone through the model it is given (the DDP wrapper), or run its backward "
                f"passes itself and return StepOutput(backward_done=True)")

    def evaluates_after(self, epoch: int) -> bool:
        """Whether the model is validated after `epoch` (1-based): every `eval_every`-th and the last `last_n`."""
        recipe = self.config.recipe
        return epoch % recipe.eval_every == 0 or epoch > recipe.epochs - recipe.last_n

    def evaluate_all(self) -> dict[str, float]:
        from mixbench.data import batches

        recipe = self.config.recipe
        results: dict[str, float] = {}
        for i, (name, model) in enumerate(self.method.eval_models(self.backbone).items()):
            loader = batches(self.val_set, recipe.eval_batch_size or self.local_batch, train=False,
                             seed=self.config.seed, epoch=self.epoch, num_workers=recipe.num_workers,
                             rank=self.rank, world_size=self.world, pin_memory=self.device.type == "cuda")
            acc = evaluate(model, loader, self.eval_augment, self.device, recipe.amp)
            if i == 0:
                results.update(acc)  # the headline model
            results[f"top1_{name}"], results[f"top5_{name}"] = acc["top1"], acc["top5"]
        return results

    def run(self, stop_after_epoch: int | None = None) -> TrialRecord:
        ckpt = self.out_dir / CHECKPOINT
        self.restore(ckpt)
        if self.rank == 0 and self.history:
            write_metrics(self.out_dir, self.history)  # the checkpoint's rows: repairs a damaged or later file
        epochs = self.config.recipe.epochs
        if self.epoch < epochs:  # a finished trial (repaired, or finishing its evaluation) never reads "running"
            self.write_record("running")
        while self.epoch < epochs:
            t0 = time.perf_counter()
            row = {"epoch": self.epoch + 1, **self.train_epoch()}
            self.check_processes_agree()
            # Evaluate and checkpoint rank 0's BatchNorm statistics on every process (each updated its own).
            dist.broadcast_state(self.backbone, self.method, parameters=False)
            if self.evaluates_after(self.epoch + 1):
                row.update(self.evaluate_all())
            self.epoch += 1
            row["epoch_seconds"] = time.perf_counter() - t0
            row["peak_memory_mb"] = dist.max_floats([peak_memory_mb(self.device)], self.device)[0]
            self.elapsed += row["epoch_seconds"]
            self.history.append(row)
            if self.rank == 0:
                checkpoint.save(ckpt, self.state())
                write_metrics(self.out_dir, self.history)
                self.write_record("running")
            if stop_after_epoch is not None and self.epoch >= stop_after_epoch:
                break
            asked_to_stop = self.stop_agreed or (self.stop_requested is not None and self.stop_requested())
            if self.epoch < epochs and dist.any_rank([asked_to_stop], self.device)[0]:
                self.preempt()  # asked during the evaluation
        done = self.epoch >= self.config.recipe.epochs
        if done and self.rank == 0:
            checkpoint.discard_previous(ckpt)
        record = self.write_record("done" if done else "interrupted", None if done else "stopped early")
        if done and self.rank == 0:  # metrics beyond top-1 (mixbench.evaluate); the others wait in shutdown
            from mixbench.evaluate import after_training

            after_training(self)
        return record

    def write_record(self, status: str, reason: str | None = None) -> TrialRecord:
        config, recipe = self.config, self.config.recipe
        models = {}
        names = list(self.method.eval_models(self.backbone))
        for name in names:
            s = summarize(self.history, f"top1_{name}", recipe.last_n)
            models[name] = {"top1": s["last"], "top1_best": s["best"], "top1_median_last_n": s["median_last_n"]}
        top1 = summarize(self.history, "top1", recipe.last_n)
        top5 = summarize(self.history, "top5", recipe.last_n)
        record = TrialRecord(
            trial_id=config.trial_id, suite=config.suite, dataset=config.dataset.key,
            backbone=config.backbone.name, method=config.method, method_label=config.method_label,
            method_version=config.method_version, hparams={**config.hparams, **self.method.hparams()},
            seed=config.seed, status=status, reason=reason, epochs=recipe.epochs, epochs_done=self.epoch,
            headline=names[0], top1=top1["last"], top5=top5["last"], top1_best=top1["best"],
            top1_best_epoch=top1["best_epoch"], top1_median_last_n=top1["median_last_n"],
            top5_best=top5["best"], top5_median_last_n=top5["median_last_n"], last_n=recipe.last_n,
            models=models, param_count=sum(p.numel() for p in self.backbone.parameters()),
            images_per_sec=self.train_images / self.train_seconds if self.train_seconds else None,
            time_total_s=self.elapsed, time_per_epoch_s=self.elapsed / self.epoch if self.epoch else None,
            peak_memory_mb=max((r["peak_memory_mb"] for r in self.history), default=None),
            device=self.device.type,
            gpu_name=torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
            world_size=self.world, started_at=self.started_at, updated_at=now(),
            threads=torch.get_num_threads(), cpu_count=os.cpu_count(), load_avg_start=self.load_avg_start,
            load_avg_end=machine_load(),
            config=config.model_dump(mode="json"), **self.env, **self.distributed_choices(),
        )
        if self.rank == 0:
            write_record(self.out_dir, record)
        return record

    def distributed_choices(self) -> dict[str, Any]:
        """How this trial was split over processes, for the record (see the module docstring)."""
        return {
            "world_sizes": self.world_sizes,  # more than one value: resumed with another process count
            "per_process_batch": self.local_batch,
            "mix_scope": "local",
            "mix_draws": "shared",
            "batch_norm": "synchronized" if self.sync_bn else "per_process",
            "grad_sync": ("none" if self.world == 1 else
                          "ddp+all_reduce" if self.grad_sync.method_runs_own_backward else "ddp"),
        }


def _build_optimizer(trial: Trial) -> torch.optim.Optimizer:
    from mixbench.optim import build_optimizer

    recipe = trial.config.recipe
    groups = trial.method.param_groups(recipe.optimizer.lr)
    return build_optimizer(trial.backbone, groups, recipe.optimizer, recipe.schedule)


def _num_batches(trial: Trial) -> int:
    from mixbench.data import num_batches

    return num_batches(trial.train_set, trial.local_batch, train=True, world_size=trial.world)


def failed_record(config: TrialConfig, out_dir: Path, reason: str, status: str = "failed") -> TrialRecord:
    """A record for a trial that could not finish, keeping what the last checkpointed epochs measured. A trial
    whose record already says done did finish (it was stopped in its evaluation, or in exiting): it stays done.
    A record that cannot be read is left as it is: the runner repairs it on the next run, it is not skipped."""
    from mixbench.results import pending_record

    on_disk, damage = try_read_record(out_dir)
    if on_disk is not None and on_disk.status == "done":
        return on_disk
    record = pending_record(config.model_dump(mode="json"))
    if damage is not None:  # the next run repairs it from the checkpoint (or records why it cannot): keep it
        return record.model_copy(update={"status": status, "reason": reason})
    try:
        history = read_metrics(out_dir)
    except DamagedFile:
        history = []  # the record must still be written; the damaged file stays for the next run to repair
    best = summarize(history, "top1", config.recipe.last_n)
    record = record.model_copy(update={
        "status": status, "reason": reason, "epochs_done": len(history), "top1": best["last"],
        "top1_best": best["best"], "top1_best_epoch": best["best_epoch"],
        "top1_median_last_n": best["median_last_n"], "updated_at": now(), **environment(),
    })
    write_record(out_dir, record)
    return record


def run_trial(config: TrialConfig | dict, out_dir: str | Path, stop_after_epoch: int | None = None,
              stop_requested: Callable[[], bool] | None = None) -> TrialRecord:
    """Train one trial to the end (or to `stop_after_epoch`), resuming from `out_dir/last.pt` if it exists.

    A trial that fails is recorded as failed with its reason and the exception is raised again. With several
    processes every one calls this; rank 0 holds the trial's lock and writes its files. `stop_requested` is
    polled after every step: when it returns True on any process, the trial checkpoints (after that step, or with
    several processes at the next check point) and raises `Preempted`.
    """
    config = TrialConfig.model_validate(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dist.rank() == 0:
        write_config(out_dir, config.model_dump(mode="json"))
    threads = os.environ.get("MIXBENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with contextlib.ExitStack() as stack:
            busy = None
            if dist.rank() == 0:
                try:
                    stack.enter_context(trial_lock(out_dir))
                except TrialBusy as err:
                    busy = err
            # Every process learns that rank 0 found the trial busy; the others would wait for it forever.
            if dist.any_rank([busy is not None], select_device())[0]:
                raise busy or TrialBusy(f"{out_dir} is being run by another process")
            trial = Trial(config, out_dir, stop_requested=stop_requested)
            return trial.run(stop_after_epoch=stop_after_epoch)
    except TrialBusy:
        raise
    except Preempted:
        raise  # the trial recorded it, with the step it stopped at
    except Interrupted:
        # torch.distributed.run stops the other processes when one fails: keep that one's reason.
        if dist.rank() == 0 and not _another_process_failed(out_dir):
            failed_record(config, out_dir, "interrupted (resumes from the last checkpoint)", status="interrupted")
        raise
    except TrialFailed as err:
        if dist.rank() == 0:  # every process raised it together (see Trial.train_epoch)
            failed_record(config, out_dir, f"{type(err).__name__}: {err}")
        raise
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        if dist.rank():
            # Only the failing process knows why, and rank 0 may be stuck waiting for it: it records the failure.
            failed_record(config, out_dir, f"process {dist.rank()} of {dist.world_size()}: {reason}")
        elif not _another_process_failed(out_dir):  # if one did, rank 0's error is only the lost connection
            failed_record(config, out_dir, reason)
        raise


def _another_process_failed(out_dir: Path) -> bool:
    record = try_read_record(out_dir)[0]
    return (dist.world_size() > 1 and record is not None and record.status == "failed"
            and (record.reason or "").startswith("process "))


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """`python -m mixbench.engine TRIAL_DIR`: run the trial whose config.yaml is in TRIAL_DIR."""
    parser = argparse.ArgumentParser(prog="python -m mixbench.engine")
    parser.add_argument("trial_dir", type=Path)
    parser.add_argument("--stop-after-epoch", type=int, default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    config = yaml.safe_load((args.trial_dir / "config.yaml").read_text())
    finished = False
    try:
        dist.init_from_env()
        run_trial(config, args.trial_dir, stop_after_epoch=args.stop_after_epoch)
        finished = True
    except Interrupted:
        return 130
    except TrialBusy as err:
        print(f"skipped: {err}", file=sys.stderr)
        return EXIT_BUSY
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        dist.shutdown(finished)
    return 0


if __name__ == "__main__":
    sys.exit(main())
