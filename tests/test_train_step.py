"""The one training step (engine and `mixbench bench`) and the on-device watch over its loss."""

from __future__ import annotations

import copy
import math

import torch

from mixbench.bench import BenchSize, StepRunner
from mixbench.methods import create_method
from mixbench.models import create_backbone
from mixbench.optim import build_optimizer
from mixbench.suite import Recipe
from mixbench.train_step import LossWatch, prepare_backbone, train_step


def test_the_benchmark_times_the_engine_step():
    size = BenchSize("tiny", 8, 16, "resnet_tiny_cifar", 10, "cifar")
    torch.manual_seed(0)
    backbone = create_backbone("resnet_tiny_cifar", num_classes=10, image_size=16)
    x, y = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 10

    runner = StepRunner(create_method("mixup"), copy.deepcopy(backbone), size, x, y)
    runner.step()
    runner.step()

    recipe = Recipe(epochs=1, batch_size=8)  # what a suite gets by default: SGD, channels_last, amp
    net = prepare_backbone(copy.deepcopy(backbone), recipe.channels_last)
    method = create_method("mixup")
    method.setup(net, 10)
    optimizer = build_optimizer(net, method.param_groups(recipe.optimizer.lr), recipe.optimizer, recipe.schedule)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        train_step(method, net, net, optimizer, x, y, gen, amp=recipe.amp, channels_last=recipe.channels_last)

    conv = next(p for p in runner.backbone.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    for (name, a), b in zip(runner.backbone.state_dict().items(), net.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert runner.optimizer.state_dict()["param_groups"][0]["weight_decay"] == recipe.optimizer.weight_decay


def test_the_loss_watch_sums_as_python_would_and_names_the_first_non_finite_step():
    losses = [0.1, 2.5, 1e-8, 3.25]
    watch = LossWatch(torch.device("cpu"), total=0.7)  # carried over from before a preemption
    for step, value in enumerate(losses, start=10):
        watch.add(torch.tensor(value, dtype=torch.float32), step)
    reading = watch.read()
    expected = 0.7
    for value in losses:
        expected += float(torch.tensor(value, dtype=torch.float32))
    assert reading.total == expected and reading.steps == 4 and reading.first_nonfinite_step is None

    for step, value in [(14, 1.0), (15, math.inf), (16, math.nan), (17, 2.0)]:
        watch.add(torch.tensor(value), step)
    reading = watch.read()
    assert reading.first_nonfinite_step == 15 and reading.first_nonfinite_value == math.inf
    assert not math.isfinite(reading.total)
