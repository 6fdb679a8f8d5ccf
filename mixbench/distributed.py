"""torch.distributed in one place: process-group set-up from the environment, model wrapping, reductions.

A trial with `gpus_per_trial: N` runs as N processes (torchrun-style variables RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT; the Slurm executor derives them from Slurm's). With one process every helper here
is a no-op, so the engine calls them unconditionally.

Gradients. DDP averages the backbone's gradients during the backward of a forward through its wrapper. Two
things escape it, and `GradientSync` covers both: the method's own parameters (AutoMix's Mix Block and mix
head live in the method, not in the wrapped backbone), and backbone passes a method runs around the wrapper
(AutoMix's mixed branch calls the bare backbone's `forward_features`). Averaging is idempotent on gradients
DDP already averaged and linear on the rest, so one more all-reduce after such a step is exact.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterable, Iterator

import torch
import torch.distributed as tdist
from torch import nn


def is_initialized() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    return tdist.get_rank() if is_initialized() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    return tdist.get_world_size() if is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def local_device_index() -> int:
    """The GPU of this process: its local rank among the GPUs it sees (one, where Slurm binds a GPU per task)."""
    return local_rank() % max(1, torch.cuda.device_count())


def init_from_env() -> None:
    """Join the process group described by the environment (NCCL on CUDA, gloo on CPU)."""
    if world_size() > 1 and not is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_device_index())
        tdist.init_process_group(backend=backend)


def shutdown(finished: bool = False) -> None:
    """Leave the process group; `finished`: every process got here normally, so wait for the others first.

    The DDP wrapper sits in reference cycles that keep the process group alive past `destroy_process_group`,
    until the interpreter's own teardown - where gloo's threads may be joined too late and abort the process
    ("terminate called without an active exception"; seen in 4 of 12 two-process runs here, 0 of 36 with the
    collection first). Collecting first releases it while the interpreter is whole.
    """
    if is_initialized():
        if finished:
            tdist.barrier()  # no process closes its connections while another still uses them
        gc.collect()
        tdist.destroy_process_group()


def active() -> bool:
    """Several processes train this trial together."""
    return is_initialized() and world_size() > 1


def wrap(model: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """DistributedDataParallel around `model` when several processes train it; the model itself otherwise.

    `sync_bn` converts the model's BatchNorm layers to SyncBatchNorm in place (batch statistics over the global
    batch instead of each process's share); torch implements it on CUDA only.
    """
    if not active():
        return model
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("sync_bn needs CUDA: torch's SyncBatchNorm has no CPU implementation; "
                             "fix: set sync_bn to false for CPU runs")
        from timm.layers import convert_sync_batchnorm  # also converts timm's BatchNormAct2d (torch's drops the act)

        # In place for a network: its children are replaced, keeping the same Parameter objects.
        model = convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model behind a DistributedDataParallel wrapper (for attribute access and state_dict)."""
    return getattr(model, "module", model)


# ---- reductions ----------------------------------------------------------------------------------------


def _reduce_floats(values: list[float], device: torch.device, op: tdist.ReduceOp) -> list[float]:
    if not is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    tdist.all_reduce(t, op=op)
    return t.tolist()


def sum_floats(values: list[float], device: torch.device) -> list[float]:
    return _reduce_floats(values, device, tdist.ReduceOp.SUM)


def max_floats(values: list[float], device: torch.device) -> list[float]:
    return _reduce_floats(values, device, tdist.ReduceOp.MAX)


def mean_dict(values: dict[str, float], device: torch.device) -> dict[str, float]:
    if not is_initialized():
        return values
    keys = sorted(values)
    sums = sum_floats([values[k] for k in keys], device)
    return {k: s / world_size() for k, s in zip(keys, sums, strict=True)}


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """For each flag, whether it is set on any process; every process gets the same answer (one all-reduce)."""
    if not active():
        return flags
    t = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def _coalesced(tensors: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Tensors grouped by (device, dtype), so each group travels as one flat buffer."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    yield from groups.values()


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Replace every trainable parameter's gradient by its mean over the processes, in one flat all-reduce.

    Parameters without a gradient count as zero, so every process sends a buffer of the same size; one that
    has none keeps none unless another process had one. Processes normally agree on which parameters got a
    gradient, because every process draws the same λ and takes the same branches (see the engine).
    """
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    n = world_size()
    for group in _coalesced(params):
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group])
        tdist.all_reduce(flat)
        flat.div_(n)
        offset = 0
        for p in group:
            mean = flat[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
            if p.grad is not None:
                p.grad.copy_(mean)
            elif bool(mean.ne(0).any()):
                p.grad = mean.clone()


def broadcast_state(*modules: nn.Module, parameters: bool = True) -> None:
    """Copy rank 0's buffers (and parameters, unless `parameters=False`) into every process's `modules`.

    Used once after set-up (a method's own parameters are not broadcast by DDP), and for the buffers before
    every evaluation and checkpoint (BatchNorm running statistics each process updated from its own share).
    """
    if not active():
        return
    tensors = [t for m in modules for t in (*(m.parameters() if parameters else ()), *m.buffers())]
    with torch.no_grad():
        for group in _coalesced(tensors):
            flat = torch.cat([t.reshape(-1) for t in group])
            tdist.broadcast(flat, src=0)
            offset = 0
            for t in group:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()


def diverged_parameters(named: dict[str, nn.Module]) -> list[str]:
    """Names of the parameters that differ between processes (a per-tensor float64 checksum, min vs max).

    Every process applies the same averaged gradients to the same weights, so their parameters must stay
    bitwise equal; a difference means some gradient was not averaged (see `GradientSync`).
    """
    if not active():
        return []
    names, sums = [], []
    for prefix, module in named.items():
        for name, p in module.named_parameters():
            names.append(f"{prefix}.{name}")
            sums.append(p.detach().double().sum())
    if not sums:
        return []
    low = torch.stack(sums)
    high = low.clone()
    tdist.all_reduce(low, op=tdist.ReduceOp.MIN)
    tdist.all_reduce(high, op=tdist.ReduceOp.MAX)
    return [name for name, differs in zip(names, low.ne(high).tolist(), strict=True) if differs]


def barrier() -> None:
    if active():
        tdist.barrier()


class GradientSync:
    """Makes every process step with the same, averaged gradients, whatever the method does in its step.

    * Methods whose step is one forward through the wrapped model and one backward (vanilla, the input
      mixers, PuzzleMix): DDP's own overlapped all-reduce does the backbone; `after_backward` averages only
      the method's parameters (usually none).
    * Methods that run their own backward passes (`StepOutput.backward_done`, AutoMix): some passes may go
      around the DDP wrapper, so after such a step the backbone's gradients are averaged once more (exact, see
      the module docstring), and from then on the method's steps run under `no_sync`, so DDP does not
      all-reduce what is all-reduced again anyway.
    """

    def __init__(self, model: nn.Module, backbone: nn.Module, method: nn.Module):
        self.model, self.backbone, self.method = model, backbone, method
        self.method_runs_own_backward = False  # learnt from the first step's StepOutput

    def step(self) -> contextlib.AbstractContextManager:
        """Wraps the forward and backward of one step."""
        if active() and self.method_runs_own_backward and hasattr(self.model, "no_sync"):
            return self.model.no_sync()
        return contextlib.nullcontext()

    def after_backward(self, backward_done: bool) -> None:
        """Before clipping and the optimizer step: average what DDP did not."""
        if not active():
            return
        average_gradients(self.method.parameters())
        if backward_done:
            self.method_runs_own_backward = True
            average_gradients(self.backbone.parameters())
