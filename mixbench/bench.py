"""`python -m mixbench.bench`: what every registered method costs, side by side with vanilla, on this device.

For each image size (cifar: 64×3×32×32 on resnet18_cifar; imagenet: 32×3×224×224 on timm resnet18; vit, not run
by default: 32×3×224×224 on timm deit_small_patch16_224; 100 classes)
and each method, built from its card's defaults for that size's dataset family:

* mixing time per batch: `method(x, y, gen)` for input mixers; for PuzzleMix the mask optimisation and
  transport (`PuzzleMix.mix`) without the saliency pass, on a saliency computed once from the model, with
  fresh draws (grid included) every call; "–" where mixing cannot be separated from the model. Timed 8 times
  after every step.
* training-step time: `training_loss` + backward (unless the method did it) + optimizer step + `after_step`,
  and its ratio to vanilla's: every step of a method is timed right after a vanilla step, the methods take
  turns within a repeat and the order rotates between repeats; the ratio is the median of these paired
  ratios, so drift and other load on the machine cancel. Medians (and minima) of the times are reported.
* peak memory of one training step, and its ratio to vanilla's. CUDA: `torch.cuda.max_memory_allocated`.
  CPU: the tensors resident when the step starts (parameters, buffers, optimizer state, the batch) plus the
  peak of live tensor bytes allocated during the step, replayed from the profiler's allocation and free events
  (`torch.profiler`, `profile_memory=True`). Memory outside torch's allocator (numpy arrays of the graph cut,
  OpenCV) is not counted.

A method that cannot run (a missing optional dependency, a size it does not support) is reported as skipped,
with the reason. `--graphcut` also times PuzzleMix's graph cuts serially, in threads and in a process pool.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from mixbench.methods import InputMixer, Method, list_methods
from mixbench.methods.cards import create_with_card


@dataclass(frozen=True)
class BenchSize:
    name: str
    batch: int
    image: int
    backbone: str
    num_classes: int
    family: str  # which method-card defaults apply


MIX_CALLS_PER_REPEAT = 8  # mixing calls timed after each step

SIZES = {
    "cifar": BenchSize("cifar", 64, 32, "resnet18_cifar", 100, "cifar"),
    "imagenet": BenchSize("imagenet", 32, 224, "resnet18", 100, "imagenet"),
    # ViT-only methods (TransMix) are skipped on the ResNets above; this size measures them (not a default).
    "vit": BenchSize("vit", 32, 224, "deit_small_patch16_224", 100, "imagenet"),
}


@dataclass
class MethodResult:
    name: str
    hparams: dict = field(default_factory=dict)
    skipped: str | None = None
    mix_ms: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # step ÷ the vanilla step timed just before it
    peak_bytes: int | None = None
    separable: bool = True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - start) * 1e3


class StepRunner:
    """One method's training step on its own copy of the backbone and its own optimizer, as the engine runs it."""

    def __init__(self, method: Method, backbone: nn.Module, size: BenchSize, x: torch.Tensor, y: torch.Tensor):
        self.method, self.backbone, self.x, self.y = method, backbone, x, y
        method.setup(backbone, size.num_classes)
        method.to(x.device)
        groups = [{"params": [p for p in backbone.parameters() if p.requires_grad]}, *method.param_groups(0.1)]
        self.optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
        self.gen = torch.Generator().manual_seed(0)
        self.steps = 0

    def step(self) -> None:
        self.backbone.train()
        self.method.train()
        self.method.set_progress(self.steps, 10_000)
        out = self.method.training_loss(self.backbone, self.x, self.y, self.gen)
        if not out.backward_done:
            out.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.method.after_step(self.backbone)
        self.steps += 1

    def mixing(self) -> Callable[[], object] | None:
        """The mixing alone, or None when it is not separable from the model."""
        method, x, y, gen = self.method, self.x, self.y, self.gen
        if isinstance(method, InputMixer):
            return lambda: method(x, y, gen)
        if callable(getattr(method, "saliency_pass", None)) and callable(getattr(method, "mix", None)):
            # A model-aware mixer (PuzzleMix): time the mask and transport for a saliency computed beforehand.
            saliency = method.saliency_pass(self.backbone, x, y)[0]
            return lambda: method.mix(x, y, saliency, **method.sample(x.shape[0], gen))
        return None

    def resident_bytes(self) -> int:
        """Bytes of the tensors alive across steps: parameters, buffers, grads, optimizer state, the batch."""
        tensors = [*self.backbone.parameters(), *self.backbone.buffers(), *self.method.parameters(),
                   *self.method.buffers(), self.x, self.y]
        tensors += [p.grad for p in tensors if isinstance(p, nn.Parameter) and p.grad is not None]
        for state in self.optimizer.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v)]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())

    def peak_bytes(self) -> int:
        device = self.x.device
        if device.type == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.step()
            _sync(device)
            return torch.cuda.max_memory_allocated(device)
        from torch.profiler import ProfilerActivity, profile

        resident = self.resident_bytes()
        with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            self.step()
        events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                        key=lambda e: e.start_ns())
        live = itertools.accumulate((e.nbytes() for e in events), initial=0)
        return resident + max(live)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Kineto writes `USDT: ... profiler_start` lines straight to file descriptor 2 at every profile; they are
    noise to a reader of the benchmark. Python's own errors are raised after the descriptor is restored."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def bench_size(size: BenchSize, names: list[str], repeats: int, warmup: int, device: torch.device,
               log: Callable[[str], None]) -> list[MethodResult]:
    import timm

    import mixbench.models  # noqa: F401  (registers resnet18_cifar into timm)

    torch.manual_seed(0)
    base = timm.create_model(size.backbone, num_classes=size.num_classes).to(device)
    x = torch.randn(size.batch, 3, size.image, size.image, generator=torch.Generator().manual_seed(1)).to(device)
    y = torch.randint(0, size.num_classes, (size.batch,), generator=torch.Generator().manual_seed(2)).to(device)

    results: dict[str, MethodResult] = {}
    runners: dict[str, StepRunner] = {}
    for name in names:
        result = results[name] = MethodResult(name)
        try:
            method = create_with_card(name, size.family)
            result.hparams = method.hparams()
            method.check_input((size.image, size.image), size.backbone)
            runners[name] = StepRunner(method, copy.deepcopy(base), size, x, y)
            for _ in range(warmup):
                runners[name].step()
        except (ImportError, ValueError, NotImplementedError, RuntimeError) as err:
            result.skipped = f"{type(err).__name__}: {err}"
            runners.pop(name, None)
            log(f"[{size.name}] {name}: skipped ({result.skipped})")

    mixers = {name: runner.mixing() for name, runner in runners.items()}
    for name, mix in mixers.items():
        results[name].separable = mix is not None
        if mix is not None:
            for _ in range(warmup):
                mix()

    # Every method's step is timed right after a vanilla step (a pair), and the pairs rotate through the methods
    # from repeat to repeat: the ratio of a pair cancels slow drift and most of the load other processes put on
    # the machine; its median over the repeats is the reported ratio.
    others = [name for name in runners if name != "vanilla"]
    baseline = runners.get("vanilla")
    for rep in range(repeats):
        rotated = others[rep % max(len(others), 1):] + others[: rep % max(len(others), 1)]
        for name in rotated or ["vanilla"]:
            if baseline is not None:
                results["vanilla"].step_ms.append(_timed(baseline.step, device))
                vanilla_mix = mixers["vanilla"]
                if vanilla_mix is not None and name == rotated[0]:
                    results["vanilla"].mix_ms.extend(_timed(vanilla_mix, device) for _ in range(MIX_CALLS_PER_REPEAT))
            if name == "vanilla":
                continue
            results[name].step_ms.append(_timed(runners[name].step, device))
            if baseline is not None:
                results[name].ratios.append(results[name].step_ms[-1] / results["vanilla"].step_ms[-1])
            if mixers[name] is not None:  # cheap, and PuzzleMix's cost depends on the grid drawn: sample more
                results[name].mix_ms.extend(_timed(mixers[name], device) for _ in range(MIX_CALLS_PER_REPEAT))
        log(f"[{size.name}] repeat {rep + 1}/{repeats}: "
            + ", ".join(f"{n} {results[n].step_ms[-1]:.0f} ms" for n in rotated))
    for name, runner in runners.items():
        results[name].peak_bytes = runner.peak_bytes()
    return [results[name] for name in names]


def puzzlemix_grid_times(size: BenchSize, repeats: int, device: torch.device
                         ) -> dict[int, tuple[float, float]] | None:
    """(median, min) PuzzleMix mixing ms per fixed grid (the reference's table lists them one by one)."""
    try:
        method = create_with_card("puzzlemix", size.family)
        method.check_input((size.image, size.image), size.backbone)
    except (ImportError, ValueError):
        return None
    from mixbench.methods.puzzlemix import grid_sizes

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(size.batch, 3, size.image, size.image, generator=gen).to(device)
    y = torch.randint(0, size.num_classes, (size.batch,), generator=gen).to(device)
    saliency = torch.rand(size.batch, size.image, size.image, generator=gen).pow(4).to(device)
    times = {}
    for grid in grid_sizes(method.block_num):
        runs = []
        for _ in range(repeats + 1):
            drawn = {**method.sample(size.batch, gen), "grid": grid}
            runs.append(_timed(lambda d=drawn: method.mix(x, y, saliency, **d), device))
        times[grid] = (statistics.median(runs[1:]), min(runs[1:]))
    return times


def graphcut_parallelism(repeats: int) -> list[tuple[int, str, str, str]]:
    """ms (median / min) to solve 64 PuzzleMix-sized grid cuts: serially, in threads, in a persistent process pool."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    from mixbench.methods._graphcut import default_workers, solve_grid_cuts

    workers = default_workers()
    rows = []
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(int, range(workers)))  # start the workers before timing
        for grid in (4, 8, 16):
            rng = np.random.default_rng(grid)
            unary = rng.integers(0, 4000 * grid, (64, grid, grid, 3)).astype(np.int32)
            cost_v = rng.integers(0, 400, (64, grid - 1, grid)).astype(np.int32)
            cost_h = rng.integers(0, 400, (64, grid, grid - 1)).astype(np.int32)

            def in_processes(u, v, h):
                chunks = [(u[k::workers], v[k::workers], h[k::workers], 1) for k in range(workers)]
                return list(pool.map(solve_grid_cuts, *zip(*chunks, strict=True)))

            timings = []
            for fn in (partial(solve_grid_cuts, unary, cost_v, cost_h, workers=1),
                       partial(solve_grid_cuts, unary, cost_v, cost_h, workers=workers),
                       partial(in_processes, unary, cost_v, cost_h)):
                fn()
                runs = [_timed(fn, torch.device("cpu")) for _ in range(repeats)]
                timings.append(f"{statistics.median(runs):.1f} / {min(runs):.1f}")
            rows.append((grid, *timings))
    return rows


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]}, {len(names)} logical CPUs" if names else platform.machine()
    except OSError:
        return platform.processor() or platform.machine()


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "–"


def markdown_table(size: BenchSize, results: list[MethodResult]) -> str:
    vanilla = next((r for r in results if r.name == "vanilla" and not r.skipped), None)
    base_mem = vanilla.peak_bytes if vanilla else None
    lines = [
        f"**{size.name}**: batch {size.batch}×3×{size.image}×{size.image}, {size.backbone}, "
        f"{size.num_classes} classes, card defaults of the `{size.family}` family",
        "",
        "| method | mixing (ms) median / min | step (ms) median / min | step ÷ vanilla | peak memory (MB) "
        "| memory ÷ vanilla |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.name} | skipped: {r.skipped} | | | | |")
            continue
        ratio = "1.00×" if r is vanilla else f"{statistics.median(r.ratios):.2f}×" if r.ratios else "–"
        mem = f"{r.peak_bytes / 2**20:.0f}" if r.peak_bytes else "–"
        mem_ratio = f"{r.peak_bytes / base_mem:.2f}×" if r.peak_bytes and base_mem else "–"
        mixing = f"{_ms(r.mix_ms)} / {min(r.mix_ms):.1f}" if r.separable and r.mix_ms else "–"
        step = f"{statistics.median(r.step_ms):.0f} / {min(r.step_ms):.0f}"
        lines.append(f"| {r.name} | {mixing} | {step} | {ratio} | {mem} | {mem_ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m mixbench.bench") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="all", help="comma-separated method names (default: every registered)")
    parser.add_argument("--sizes", default="cifar,imagenet", help=f"comma-separated, from {', '.join(SIZES)}")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per method (medians are reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per method first")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--graphcut", action="store_true", help="also time gco graph cuts: serial/threads/processes")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = list_methods() if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    if "vanilla" not in names:
        names.insert(0, "vanilla")  # every ratio is against vanilla, measured in the same run
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(f"mixbench bench: {device.type} ({where}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.repeats} repeats after {args.warmup} warm-up; medians\n")
    for size_name in sizes:
        size = SIZES[size_name]
        results = bench_size(size, names, args.repeats, args.warmup, device, log)
        print(markdown_table(size, results) + "\n")
        if any(r.name == "puzzlemix" and not r.skipped for r in results):
            grids = puzzlemix_grid_times(size, args.repeats, device)
            if grids:
                cells = ", ".join(f"grid {g}: {med:.1f} / {low:.1f}" for g, (med, low) in grids.items())
                print(f"PuzzleMix mixing by fixed grid ({size.name}), ms median / min: {cells}\n")
    if args.graphcut:
        print("| grid (64 cuts) | serial (ms) median / min | threads | process pool |\n|---:|---:|---:|---:|")
        for grid, serial, threads, processes in graphcut_parallelism(max(args.repeats, 5)):
            print(f"| {grid}×{grid} | {serial} | {threads} | {processes} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
