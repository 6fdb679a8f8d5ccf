"""One training step, as every trial runs it and as `mixbench bench` times it, and the watch on its loss.

`train_step` is the step itself: the method's `training_loss` under the recipe's autocast on a channels_last
batch, the backward (unless the method ran its own), gradient averaging across processes, clipping, the
optimizer step and the method's `after_step`. The engine and the benchmark both call it, with an optimizer
from `build_optimizer` and a backbone from `prepare_backbone`, so what is measured is what trials run.

`LossWatch` keeps the epoch's loss on the device. Reading a loss back every step (`float(loss)`) would wait
for the GPU to finish that step before the next can be queued; the watch sums the losses and remembers the
first non-finite one without leaving the device, and `read()` brings them back in one transfer, which the
engine does every few steps and at the end of the epoch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mixbench.methods.base import Method, StepOutput


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when the recipe asks for it; nothing on CPU (slower there, and not bit-exact)."""
    if device.type == "cuda" and amp:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_backbone(backbone: nn.Module, channels_last: bool) -> nn.Module:
    """The backbone in the step's memory format.

    One memory format for every method, on every device: with the weights' layout fixed, a convolution's
    output layout no longer depends on the input's strides, which mixing changes (a 1-channel batch is
    ambiguous: vanilla's ran channels_last and Mixup's NCHW, a 1.3x CPU time gap that was pure layout).
    """
    return backbone.to(memory_format=torch.channels_last) if channels_last else backbone


def train_step(
    method: Method,
    model: nn.Module,
    backbone: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    gen: torch.Generator,
    *,
    amp: bool,
    channels_last: bool,
    grad_clip: float | None = None,
    grad_sync=None,
) -> StepOutput:
    """One optimizer step of `method` on the batch (x, y); returns the method's output (its loss not read back).

    `model` is what the method runs (the DDP wrapper under several processes, else the backbone itself);
    `grad_sync` (a `distributed.GradientSync`) averages the gradients the wrapper does not.
    """
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with grad_sync.step() if grad_sync is not None else contextlib.nullcontext():
        with autocast(x.device, amp):
            out = method.training_loss(model, x, y, gen)
        if not out.backward_done:
            out.loss.backward()
    if grad_sync is not None:
        grad_sync.after_backward(out.backward_done)
    if grad_clip:
        nn.utils.clip_grad_norm_(backbone.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    method.after_step(backbone)
    return out


@dataclass
class LossReading:
    total: float  # the losses summed (NaN or inf once one was)
    steps: int  # how many were added to the watch
    first_nonfinite_step: int | None  # the trial step of the first non-finite loss, if any
    first_nonfinite_value: float | None


class LossWatch:
    """The running loss of an epoch, on the device: `add` never waits for the device, `read` does once."""

    def __init__(self, device: torch.device, total: float = 0.0) -> None:
        # `total` carries on a sum begun before a preemption: summed in the same order, it is the same number.
        self.total = torch.full((), total, dtype=torch.float64, device=device)
        self.bad_step = torch.full((), -1, dtype=torch.float64, device=device)
        self.bad_value = torch.zeros((), dtype=torch.float64, device=device)
        self.steps = 0

    def add(self, loss: Tensor, step: int) -> None:
        loss = loss.detach().to(torch.float64)
        first_bad = ~torch.isfinite(loss) & (self.bad_step < 0)
        self.bad_step = torch.where(first_bad, float(step), self.bad_step)
        self.bad_value = torch.where(first_bad, loss, self.bad_value)
        self.total += loss
        self.steps += 1

    def read(self) -> LossReading:
        total, bad_step, bad_value = torch.stack([self.total, self.bad_step, self.bad_value]).tolist()
        bad = bad_step >= 0
        return LossReading(total, self.steps, int(bad_step) if bad else None, bad_value if bad else None)
