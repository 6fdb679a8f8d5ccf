"""The engine's training loop against a plain timm-style loop, and the cost of reading the loss every step.

    python benchmarks/bench_step_loop.py --device cuda --size imagenet --steps 50 --repeats 5
    python benchmarks/bench_step_loop.py --device cpu --size cifar --steps 10 --repeats 7 --threads 2

Three loops train the same model (a fresh copy each, same start) on one fixed batch already on the device, so
only the step loop is measured (no data loading, no augmentation), vanilla training, the default recipe
(SGD, bf16 autocast on CUDA, channels_last):

* `plain`: what timm's train loop does per step: forward under autocast, cross-entropy, backward, SGD step,
  zero_grad; the device is waited for only at the end of a block;
* `engine`: `mixbench.train_step.train_step` with the loss kept on the device (`LossWatch`), read back every
  50 steps, as trials run now;
* `engine_sync`: the same step, but the loss read back after every step (`float(loss)`), as trials ran before.

Each repeat times one block of `--steps` steps of every loop, the loops taking turns in a rotating order; a
loop's ratio to `plain` is the median over repeats of (its images/s ÷ plain's in the same repeat), so drift
and other load cancel. On CPU the three should be within noise (a CPU op is finished when it returns); on a
GPU `engine_sync` shows what the per-step host sync cost.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from mixbench.methods import create_method
from mixbench.models import create_backbone
from mixbench.optim import build_optimizer
from mixbench.suite import Recipe
from mixbench.train_step import LossWatch, autocast, prepare_backbone, train_step

SIZES = {"cifar": (128, 32, "resnet18_cifar"), "imagenet": (64, 224, "resnet50")}  # batch, pixels, backbone
READ_EVERY = 50


def make_loops(backbone: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, num_classes: int):
    loops = {}

    def fresh():
        net = prepare_backbone(copy.deepcopy(backbone), recipe.channels_last).train()
        return net, build_optimizer(net, [], recipe.optimizer, recipe.schedule)

    net_p, opt_p = fresh()

    def plain(step: int) -> None:
        inputs = x.contiguous(memory_format=torch.channels_last) if recipe.channels_last else x
        with autocast(x.device, recipe.amp):
            loss = F.cross_entropy(net_p(inputs).float(), y)
        loss.backward()
        opt_p.step()
        opt_p.zero_grad(set_to_none=True)

    loops["plain"] = plain
    for name, sync_every_step in (("engine", False), ("engine_sync", True)):
        net, opt = fresh()
        method = create_method("vanilla")
        method.setup(net, num_classes)
        gen = torch.Generator().manual_seed(0)
        watch = LossWatch(x.device)

        def engine(step: int, net=net, opt=opt, method=method, gen=gen, watch=watch, sync=sync_every_step) -> None:
            out = train_step(method, net, net, opt, x, y, gen, amp=recipe.amp, channels_last=recipe.channels_last)
            if sync:
                float(out.loss.detach())
            else:
                watch.add(out.loss, step)
                if (step + 1) % READ_EVERY == 0:
                    watch.read()

        loops[name] = engine
    return loops


def timed_block(loop, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for step in range(steps):
        loop(step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default="cifar")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps of each loop first")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch, pixels, name = SIZES[args.size]
    torch.manual_seed(0)
    backbone = create_backbone(name, num_classes=100, image_size=pixels).to(device)
    x = torch.randn(batch, 3, pixels, pixels, generator=torch.Generator().manual_seed(1)).to(device)
    y = torch.randint(0, 100, (batch,), generator=torch.Generator().manual_seed(2)).to(device)
    loops = make_loops(backbone, x, y, Recipe(epochs=1, batch_size=batch), 100)
    for loop in loops.values():
        timed_block(loop, args.warmup, device)
    speeds: dict[str, list[float]] = {n: [] for n in loops}
    names = list(loops)
    for rep in range(args.repeats):
        for n in names[rep % len(names):] + names[: rep % len(names)]:
            speeds[n].append(batch * args.steps / timed_block(loops[n], args.steps, device))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{args.size}: {name}, batch {batch}×3×{pixels}×{pixels}, {where}, torch {torch.__version__}; "
          f"{args.repeats} repeats of {args.steps} steps\n")
    print("| loop | images/s (median) | ÷ plain (median of paired ratios) |\n|---|---:|---:|")
    for n in names:
        ratio = statistics.median(s / p for s, p in zip(speeds[n], speeds["plain"], strict=True))
        print(f"| {n} | {statistics.median(speeds[n]):.0f} | {ratio:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
