"""torch.distributed in one place: process-group set-up from the environment, model wrapping, reductions.

A trial with `gpus_per_trial: N` runs as N processes (torchrun-style variables RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT, or Slurm's). With one process every helper here is a no-op.
"""

from __future__ import annotations

import os

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


def init_from_env() -> None:
    """Join the process group described by the environment (NCCL on CUDA, gloo on CPU)."""
    if world_size() > 1 and not is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())
        tdist.init_process_group(backend=backend)


def shutdown() -> None:
    if is_initialized():
        tdist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` when several processes train it; the model itself otherwise."""
    if not is_initialized() or world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sum_floats(values: list[float], device: torch.device) -> list[float]:
    if not is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    tdist.all_reduce(t)
    return t.tolist()


def mean_dict(values: dict[str, float], device: torch.device) -> dict[str, float]:
    if not is_initialized():
        return values
    keys = sorted(values)
    sums = sum_floats([values[k] for k in keys], device)
    return {k: s / world_size() for k, s in zip(keys, sums, strict=True)}
