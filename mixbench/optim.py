"""Optimizers and per-iteration learning-rate schedules (warm-up, cosine to a floor, steps).

The schedule is a pure function of the step, so the step counter is all the scheduler state a checkpoint
needs. Every parameter group carries its own `base_lr` and `min_lr`: a method can ask for its own schedule
(AutoMix's Mix Block: lr 0.1 cosine to 1e-3 while the backbone goes to 0).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mixbench.suite import OptimizerConfig, ScheduleConfig


def build_optimizer(
    backbone: nn.Module, method_groups: list[dict[str, Any]], cfg: OptimizerConfig, schedule: ScheduleConfig
) -> torch.optim.Optimizer:
    groups = [{"params": [p for p in backbone.parameters() if p.requires_grad], "name": "backbone"}]
    groups += method_groups
    for group in groups:
        group.setdefault("lr", cfg.lr)
        group.setdefault("min_lr", schedule.min_lr)
        group["base_lr"] = group["lr"]
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def lr_factor_progress(step: int, total_steps: int, warmup_steps: int) -> float:
    """Fraction of the post-warm-up schedule done at `step`, in [0, 1]."""
    if total_steps <= warmup_steps:
        return 1.0
    return min(1.0, max(0.0, (step - warmup_steps) / (total_steps - warmup_steps)))


def lr_at(
    step: int, base_lr: float, min_lr: float, cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int
) -> float:
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup_steps:
        start = cfg.warmup_start_factor
        return base_lr * (start + (1 - start) * step / warmup_steps)
    if cfg.name == "cosine":
        progress = lr_factor_progress(step, total_steps, warmup_steps)
        return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.name == "step":
        epoch = step // steps_per_epoch
        return base_lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return base_lr


def set_lr(
    optimizer: torch.optim.Optimizer, step: int, cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int
) -> float:
    """Set every group's lr for `step`; returns the first (backbone) group's lr for the logs."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, group["base_lr"], group["min_lr"], cfg, steps_per_epoch, total_steps)
    return optimizer.param_groups[0]["lr"]
