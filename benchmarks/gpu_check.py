"""The GPU path, measured: one prepared check of everything mixbench does only on CUDA.

    python benchmarks/gpu_check.py                 # on a GPU machine: the full check, ~5-8 minutes on one GPU
    python benchmarks/gpu_check.py --device cpu --quick   # everywhere else: the same code paths, CPU-sized

Six parts, each printed as a row of one table (and written to `--out`/gpu_check.{json,md}):

1. smoke: `mixbench run suites/smoke.yaml` (and smoke_more, smoke_vit: every method) on the device (bf16
   autocast on CUDA); every method must finish above chance.
2. throughput: a vanilla trial's training images/s (the engine, last epoch) ÷ a plain hand-written timm-style
   loop on the same model, batch, data and on-device augmentation (ResNet-18 at 224 px and resnet18_cifar at
   32 px). Target ≥ 0.95×.
3. methods: every method's training step and peak memory ÷ vanilla's (`mixbench.bench`; on CUDA also the `vit`
   size, DeiT-S at 224 px, for TransMix). Targets: AutoMix ≤ 3.2× time and ≤ 1.5× memory, PuzzleMix ≤ 2.0×
   time, ManifoldMix and TransMix ≤ 1.1× time, input mixers ≤ 1.05× time.
4. ddp: a 1-process DDP trial (NCCL on CUDA, gloo on CPU) and a SyncBatchNorm trial (CUDA only) against the
   same trial without DDP: the per-epoch train loss must agree within float tolerance.
5. resume: a trial stopped after epoch 1 and resumed against an uninterrupted one: the same steps and lr; the
   loss difference is reported (bit-exact on CPU, close on GPU).
6. cost model: measured images/s next to the dry-run cost model's estimate for the same trial, with the
   effective TFLOP/s that would make the model exact (to calibrate `cost.EFFECTIVE_FLOPS`).

Correctness parts (1, 4, 5) fail the script (exit 1); performance parts report whether they meet their
targets. Parts that need CUDA are skipped on CPU, saying so. This is a benchmark, not a test: nothing here
runs in CI except the `--device cpu --quick` form, which checks that the script itself still works.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CHANCE_MARGIN = 1.0  # top-1 points a smoke trial must clear above chance (10 classes: 10 %)
LOSS_RTOL = {"cpu": 1e-5, "cuda": 2e-2}  # DDP(1 process) vs plain: per-epoch mean train loss, relative
TIME_TARGETS = {"automix": 3.2, "puzzlemix": 2.0,  # step time ÷ vanilla; input mixers: INPUT_MIXER_TARGET
                "manifoldmix": 1.1, "transmix": 1.1}  # issue 15's targets (TransMix on the `vit` size only)
INPUT_MIXER_TARGET = 1.05
MEMORY_TARGETS = {"automix": 1.5}
VIT_METHODS = ("vanilla", "mixup", "cutmix", "manifoldmix", "transmix")
THROUGHPUT_TARGET = 0.95


def _quick_size():
    from mixbench.bench import BenchSize

    return BenchSize("quick", 8, 32, "test_resnet", 10, "cifar")


@dataclass
class Part:
    name: str
    status: str  # "pass", "fail", "below target", "skip"
    detail: str
    figures: dict = field(default_factory=dict)


@dataclass
class Settings:
    device: torch.device
    quick: bool
    work: Path

    @property
    def small_backbone(self) -> str:
        """The CIFAR-sized network of parts 4-5: the real one, or timm's tiny test_resnet with --quick."""
        return "test_resnet" if self.quick else "resnet18_cifar"


def synthetic_config(suite: str, method: str, *, backbone: str, image_size: int | None, batch: int, epochs: int,
                     per_class: int | None, seed: int = 0, **recipe) -> dict:
    """A trial on the in-memory synthetic dataset (32 px, 10 classes; resized on device to `image_size`)."""
    return {
        "suite": suite, "dataset": {"name": "synthetic", "limit_per_class": per_class, "val_limit_per_class": 10},
        "backbone": {"name": backbone}, "method": method, "method_label": method, "method_version": 1,
        "hparams": {}, "seed": seed,
        "recipe": {"epochs": epochs, "batch_size": batch, "num_workers": 0, "image_size": image_size,
                   "schedule": {"name": "cosine", "warmup_epochs": 0}, **recipe},
    }


def run_engine(config: dict, trial_dir: Path, stop_after_epoch: int | None = None) -> list[dict]:
    """Run a trial in this process (as the local runner's worker does) and return its metrics.jsonl rows."""
    from mixbench.engine import run_trial
    from mixbench.results import read_metrics

    run_trial(config, trial_dir, stop_after_epoch=stop_after_epoch)
    return read_metrics(trial_dir)


# ---- 1. smoke suite --------------------------------------------------------------------------------------


SMOKE_SUITES = ("smoke", "smoke_more", "smoke_vit")  # together: every registered method


def check_smoke(s: Settings) -> Part:
    from mixbench.results import read_record

    results = s.work / "smoke"
    env = dict(os.environ)  # on CPU, main() has set CUDA_VISIBLE_DEVICES="": the runner then uses the CPU
    start = time.perf_counter()
    failures = []
    for suite in SMOKE_SUITES[:1] if s.quick else SMOKE_SUITES:
        cmd = [sys.executable, "-m", "mixbench.cli", "run", str(REPO / f"suites/{suite}.yaml"), "--results",
               str(results), "--no-live", "--set", "recipe.amp=true"]
        if s.quick:  # fixture-sized data: the trials must finish, but need not learn
            cmd += ["--only", "method=vanilla,mixup", "--tiny"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        if proc.returncode:
            failures.append(f"{suite}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    seconds = time.perf_counter() - start
    records = [read_record(p.parent) for p in sorted(results.rglob("record.json"))]
    if not records:
        return Part("1 smoke", "fail", f"no records; {'; '.join(failures)}")
    chance = 100.0 / 10
    rows = {f"{r.suite}/{r.method_label}": (r.status, r.top1_median_last_n) for r in records}
    floor = -math.inf if s.quick else chance + CHANCE_MARGIN
    bad = {k: v for k, v in rows.items() if v[0] != "done" or v[1] is None or v[1] <= floor}
    detail = ", ".join(f"{k} {v[1]:.1f}" if v[1] is not None else f"{k} {v[0]}" for k, v in rows.items())
    amp = "bf16 autocast" if s.device.type == "cuda" else "fp32 (autocast is CUDA-only)"
    return Part("1 smoke", "fail" if bad or failures else "pass",
                f"{len(rows)} trials, {amp}, {seconds:.0f} s: {detail} (chance {chance:.0f})"
                + "".join(f"; {f}" for f in failures),
                {"top1": {k: v[1] for k, v in rows.items()}, "seconds": seconds})


# ---- 2. engine vs a plain loop ---------------------------------------------------------------------------


def plain_loop_images_per_sec(config: dict, device: torch.device, steps: int, warmup: int) -> float:
    """A timm-style training loop, written out by hand: the same model, optimizer, batch, data and on-device
    augmentation as the trial, and nothing else (no method dispatch, no bookkeeping, no logging)."""
    from mixbench.data import dataset_info, device_augment, load_split
    from mixbench.models import create_backbone

    info = dataset_info("synthetic")
    recipe = config["recipe"]
    train = load_split("synthetic", None, "train", limit_per_class=config["dataset"]["limit_per_class"])
    augment = device_augment(info, train=True, image_size=recipe["image_size"]).to(device)
    model = create_backbone(config["backbone"]["name"], info.num_classes, recipe["image_size"]).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    batch = recipe["batch_size"]
    n = train.images.shape[0] // batch
    use_amp = device.type == "cuda"

    def step(k: int) -> None:
        images = train.images[(k % n) * batch:(k % n + 1) * batch].to(device, non_blocking=True)
        labels = train.labels[(k % n) * batch:(k % n + 1) * batch].to(device, non_blocking=True)
        x = augment(images, gen).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    for k in range(warmup):
        step(k)
    _sync(device)
    start = time.perf_counter()
    for k in range(steps):
        step(warmup + k)
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def check_throughput(s: Settings) -> Part:
    cases = [("test_resnet", 32, 32)] if s.quick else [("resnet18", 224, 128), ("resnet18_cifar", 32, 256)]
    if s.device.type == "cpu" and not s.quick:
        cases = [("resnet18_cifar", 32, 64)]  # ResNet-18 at 224 px is minutes per epoch on a CPU
    figures, worst = {}, math.inf
    for backbone, size, batch in cases:
        per_class = max(batch * 4 // 10, 1) if s.quick else None  # quick: 4 steps an epoch; else 2000 images
        epochs = 2 if s.quick else 3
        config = synthetic_config("gpu_check", "vanilla", backbone=backbone, image_size=size, batch=batch,
                                  epochs=epochs, per_class=per_class)
        rows = run_engine(config, s.work / f"throughput-{backbone}-{size}")
        engine = rows[-1]["images_per_sec"]  # the last epoch: cudnn autotuning and first-step costs are behind
        steps = (2000 if per_class is None else per_class * 10) // batch
        plain = plain_loop_images_per_sec(config, s.device, steps=steps, warmup=min(steps, 5))
        ratio = engine / plain
        worst = min(worst, ratio)
        figures[f"{backbone}@{size}"] = {"batch": batch, "engine_img_s": engine, "plain_img_s": plain,
                                         "ratio": ratio}
    detail = "; ".join(f"{k} batch {v['batch']}: engine {v['engine_img_s']:,.0f} img/s, plain loop "
                       f"{v['plain_img_s']:,.0f} img/s, ratio {v['ratio']:.3f}" for k, v in figures.items())
    return Part("2 throughput", "pass" if worst >= THROUGHPUT_TARGET else "below target",
                f"{detail} (target ≥ {THROUGHPUT_TARGET})", figures)


# ---- 3. every method vs vanilla --------------------------------------------------------------------------


def check_methods(s: Settings) -> Part:
    from mixbench import bench
    from mixbench.methods import InputMixer, list_methods
    from mixbench.methods.registry import get_method_class

    sizes = [_quick_size()] if s.quick else [bench.SIZES["cifar"]] + ([] if s.device.type == "cpu" else
                                                                     [bench.SIZES["imagenet"], bench.SIZES["vit"]])
    names = ["vanilla", "mixup", "cutmix"] if s.quick else list_methods()
    repeats, warmup = (1, 0) if s.quick else (10, 2)
    figures, misses = {}, []
    for size in sizes:
        size_name = size.name
        # The ViT size is there for TransMix: only the methods a ViT comparison needs, to keep the check short.
        chosen = [n for n in names if n in VIT_METHODS] if size.name == "vit" else names
        results = bench.bench_size(size, chosen, repeats, warmup, s.device, log=lambda line: None)
        base = next(r for r in results if r.name == "vanilla")
        for r in results:
            if r.skipped or r.name == "vanilla":
                continue
            time_ratio = statistics.median(r.ratios)
            mem_ratio = r.peak_bytes / base.peak_bytes if r.peak_bytes and base.peak_bytes else None
            target = TIME_TARGETS.get(r.name)
            if target is None and issubclass(get_method_class(r.name), InputMixer):
                target = INPUT_MIXER_TARGET
            figures[f"{size_name}/{r.name}"] = {"step_ratio": time_ratio, "memory_ratio": mem_ratio,
                                                "time_target": target, "memory_target": MEMORY_TARGETS.get(r.name)}
            if target is not None and time_ratio > target:
                misses.append(f"{size_name}/{r.name} time {time_ratio:.2f}× > {target}×")
            mem_target = MEMORY_TARGETS.get(r.name)
            if mem_target is not None and mem_ratio is not None and mem_ratio > mem_target:
                misses.append(f"{size_name}/{r.name} memory {mem_ratio:.2f}× > {mem_target}×")
    detail = "; ".join(f"{k} {v['step_ratio']:.2f}× time, "
                       + (f"{v['memory_ratio']:.2f}× memory" if v["memory_ratio"] else "memory n/a")
                       for k, v in figures.items())
    if misses:
        detail += " — misses: " + ", ".join(misses)
    return Part("3 methods", "below target" if misses else "pass", detail, figures)


# ---- 4. DDP and SyncBN -----------------------------------------------------------------------------------


def _ddp_rows(config: dict, trial_dir: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """The trial as the local runner launches a DDP trial: `torch.distributed.run`, here with one process."""
    from mixbench.results import read_metrics, write_config
    from mixbench.runner.local import free_port

    trial_dir.mkdir(parents=True, exist_ok=True)
    write_config(trial_dir, config)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=1", "--master-addr=127.0.0.1",
           f"--master-port={free_port()}", "-m", "mixbench.engine", str(trial_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    return proc, read_metrics(trial_dir)


def _loss_gap(a: list[dict], b: list[dict]) -> float:
    """The largest relative difference of the per-epoch mean train loss."""
    return max(abs(x["train_loss"] - y["train_loss"]) / max(abs(y["train_loss"]), 1e-12)
               for x, y in zip(a, b, strict=True))


def check_ddp(s: Settings) -> Part:
    from mixbench.suite import TrialConfig

    epochs, per_class = (1, 8) if s.quick else (2, 50)
    tol = LOSS_RTOL[s.device.type]
    figures, failures, notes = {}, [], []
    cases = [("ddp", False)] + ([("syncbn", True)] if s.device.type == "cuda" else [])
    if s.device.type != "cuda":
        notes.append("SyncBatchNorm skipped: CUDA only; DDP ran on gloo (NCCL needs CUDA)")
    for name, sync_bn in cases:
        config = TrialConfig.model_validate(synthetic_config(
            "gpu_check", "mixup", backbone=s.small_backbone, image_size=32, batch=32, epochs=epochs,
            per_class=per_class, amp=False, sync_bn=sync_bn)).model_dump(mode="json")
        plain = run_engine(config, s.work / f"{name}-plain")
        proc, ddp = _ddp_rows(config, s.work / f"{name}-ddp")
        if proc.returncode or len(ddp) != len(plain):
            failures.append(f"{name}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
            continue
        gap = _loss_gap(ddp, plain)
        figures[name] = {"loss_rel_gap": gap, "top1_ddp": ddp[-1].get("top1"), "top1_plain": plain[-1].get("top1")}
        if gap > tol:
            failures.append(f"{name}: train loss differs by {gap:.2e} (relative) > {tol:g}")
    backend = "NCCL" if s.device.type == "cuda" else "gloo"
    detail = "; ".join([f"{k} ({backend}, 1 process) vs plain: train loss gap {v['loss_rel_gap']:.2e} (rel)"
                        for k, v in figures.items()] + failures + notes)
    return Part("4 ddp", "fail" if failures else "pass", detail, figures)


# ---- 5. resume -------------------------------------------------------------------------------------------


def check_resume(s: Settings) -> Part:
    epochs, per_class = (2, 8) if s.quick else (3, 50)
    config = synthetic_config("gpu_check", "cutmix", backbone=s.small_backbone, image_size=32, batch=32,
                              epochs=epochs, per_class=per_class)
    whole = run_engine(config, s.work / "resume-whole")
    run_engine(config, s.work / "resume-split", stop_after_epoch=1)
    split = run_engine(config, s.work / "resume-split")
    same_lr = all(a["lr"] == b["lr"] for a, b in zip(whole, split, strict=False))
    same_len = len(whole) == len(split) == epochs
    gap = _loss_gap(split, whole)
    top1_gap = max(abs(a["top1"] - b["top1"]) for a, b in zip(whole, split, strict=False))
    exact = s.device.type == "cpu"
    ok = same_len and same_lr and (gap == 0.0 if exact else True)
    detail = (f"stopped after epoch 1 of {epochs}, resumed: epochs {'match' if same_len else 'DIFFER'}, lr "
              f"{'identical' if same_lr else 'DIFFERS'}; train loss gap {gap:.2e} (rel), top-1 gap {top1_gap:.2f} "
              f"points ({'bit-exact required on CPU' if exact else 'bit-exactness not expected on GPU'})")
    return Part("5 resume", "pass" if ok else "fail", detail, {"loss_rel_gap": gap, "top1_gap": top1_gap})


# ---- 6. the cost model -----------------------------------------------------------------------------------


def check_cost_model(s: Settings, throughput: Part) -> Part:
    from mixbench import cost
    from mixbench.suite import TrialConfig

    rows = {}
    for key, fig in throughput.figures.items():
        backbone, size = key.split("@")
        config = TrialConfig.model_validate(synthetic_config(
            "gpu_check", "vanilla", backbone=backbone, image_size=int(size), batch=fig["batch"], epochs=1,
            per_class=None))
        est = cost.estimate_trial(config)
        precision = "bf16" if config.recipe.amp else "fp32"
        flops_per_image = est.forward_gflops * 1e9 * 3  # forward + backward
        model_img_s = cost.EFFECTIVE_FLOPS[precision] / flops_per_image
        measured = fig["engine_img_s"]
        rows[key] = {"measured_img_s": measured, "model_img_s": model_img_s, "precision": precision,
                     "implied_effective_tflops": measured * flops_per_image / 1e12}
    detail = "; ".join(f"{k}: measured {v['measured_img_s']:,.0f} img/s, model {v['model_img_s']:,.0f} img/s "
                       f"({v['precision']}); effective {v['implied_effective_tflops']:.2f} TFLOP/s measured vs "
                       f"{cost.EFFECTIVE_FLOPS[v['precision']] / 1e12:.0f} assumed" for k, v in rows.items())
    if s.device.type != "cuda":
        detail += " (the cost model estimates GPUs; on CPU this only checks the comparison runs)"
    return Part("6 cost model", "pass", detail, rows)


# ---- driver ----------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict:
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
           "cuda": torch.version.cuda, "python": platform.python_version(), "device": str(device),
           "threads": torch.get_num_threads()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True).stdout.strip()
        except OSError:
            env["driver"] = None
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def markdown(env: dict, parts: list[Part]) -> str:
    lines = [f"gpu_check: {', '.join(f'{k} {v}' for k, v in env.items() if v is not None)}", "",
             "| part | status | figures |", "|---|---|---|"]
    lines += [f"| {p.name} | {p.status} | {p.detail.replace('|', '/')} |" for p in parts]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None,
                        help="default: cuda when available, else cpu (CUDA-only parts are then skipped)")
    parser.add_argument("--quick", action="store_true", help="CPU-sized: a few steps per part (what CI runs)")
    parser.add_argument("--parts", default="1,2,3,4,5,6", help="which parts to run, e.g. 2,3")
    parser.add_argument("--out", type=Path, default=None, help="write gpu_check.json and gpu_check.md here")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible here; use --device cpu")
    if device.type == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the engine picks its device itself: keep it on the CPU
        print("gpu_check: no CUDA device: running the CPU form; bf16 autocast, NCCL, SyncBatchNorm and CUDA "
              "memory are skipped", file=sys.stderr)
    wanted = {p.strip() for p in args.parts.split(",")}
    env = environment(device)
    parts: list[Part] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        s = Settings(device, args.quick, Path(tmp))
        steps: list[tuple[str, Callable[[], Part]]] = [
            ("1", lambda: check_smoke(s)), ("2", lambda: check_throughput(s)), ("3", lambda: check_methods(s)),
            ("4", lambda: check_ddp(s)), ("5", lambda: check_resume(s)),
        ]
        for key, run in steps:
            if key in wanted:
                start = time.perf_counter()
                parts.append(run())
                print(f"gpu_check: part {parts[-1].name}: {parts[-1].status} ({time.perf_counter() - start:.0f} s)",
                      file=sys.stderr, flush=True)
        throughput = next((p for p in parts if p.name == "2 throughput"), None)
        if "6" in wanted:
            parts.append(check_cost_model(s, throughput) if throughput and throughput.figures else
                         Part("6 cost model", "skip", "needs part 2's measured images/s"))
    text = markdown(env, parts)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.md").write_text(text)
        (args.out / "gpu_check.json").write_text(json.dumps({"environment": env,
                                                             "parts": [asdict(p) for p in parts]}, indent=1))
    return 1 if any(p.status == "fail" for p in parts) else 0


if __name__ == "__main__":
    sys.exit(main())
