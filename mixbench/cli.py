"""`mixbench` command line: thin; it parses arguments and calls the modules that do the work."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from rich.console import Console

from mixbench.suite import AXES, Suite, SuiteError, TrialConfig, axes_match

# Outside a terminal (CI, Slurm logs) rich would wrap tables at 80 columns; logs are read wide.
console = Console(width=None if sys.stdout.isatty() else 200)


def _load(args) -> tuple[Suite, list[TrialConfig], Path]:
    from mixbench.suite import expand, load_suite, parse_data_roots

    suite = load_suite(args.suite, getattr(args, "set", None))
    trials = expand(suite, args.suite, parse_data_roots(getattr(args, "data_root", None), suite))
    for only in getattr(args, "only", None) or []:
        axis, _, values = only.partition("=")
        if axis not in AXES or not values:
            raise SuiteError(f"--only {only}: expected AXIS=V1,V2 with AXIS one of {', '.join(AXES)}")
        wanted = set(values.split(","))
        known = {str(v) for t in trials for v in _axis(t, axis)}
        if wanted - known:
            raise SuiteError(f"--only {only}: no trial of {args.suite} has {axis} {', '.join(sorted(wanted - known))}; "
                             f"fix: choose from {', '.join(sorted(known))}")
        trials = [t for t in trials if axes_match({axis: sorted(wanted)}, t.axes)]
    results = Path(getattr(args, "results", None) or suite.results_dir) / suite.name
    return suite, trials, results


def parse_gpus(text: str | None) -> list[int] | None:
    """--gpus 0,1: ids torch can see; None: every visible GPU (or the CPU when there is none)."""
    if text is None:
        return None
    try:
        ids = [int(g) for g in text.split(",")]
    except ValueError:
        raise SuiteError(f"--gpus {text}: expected GPU ids separated by commas, e.g. --gpus 0,1; fix: give ids "
                         f"(nvidia-smi lists them) or leave --gpus out to use every visible GPU") from None
    from mixbench.runner.local import visible_gpus

    visible = visible_gpus()
    if not visible:
        raise SuiteError(f"--gpus {text}: torch sees no GPU on this machine (torch.cuda.is_available() is False); "
                         f"fix: leave --gpus out to run on the CPU, or install a CUDA build of torch")
    missing = [g for g in ids if g not in visible]
    if missing or len(set(ids)) != len(ids):
        raise SuiteError(f"--gpus {text}: visible GPUs are {', '.join(map(str, visible))}; fix: name each of them "
                         f"at most once")
    return ids


def check_writable(results: Path) -> None:
    """Fail before any trial starts when the results folder cannot be written (read-only mount, permissions)."""
    import tempfile

    try:
        results.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results, prefix=".write-test-"):
            pass
    except OSError as err:
        raise SuiteError(f"{results}: results folder is not writable ({err.strerror or err}); fix: pass "
                         f"--results DIR with a folder you can write, or change results_dir: in the suite") from None


def _failed_trials(jobs) -> list:
    """The suite's trials that are failed now: failed in this run, or failed earlier and skipped."""
    from mixbench.results import try_read_record

    failed = []
    for job in jobs:
        record = try_read_record(job.trial_dir)[0]
        if job.state == "failed" or (job.state == "skipped" and record is not None and record.status == "failed"):
            failed.append(job)
    return failed


def _axis(trial: TrialConfig, axis: str) -> list:
    value = trial.axes[axis]
    return value if isinstance(value, list) else [value]


def cmd_run(args) -> int:
    from rich.live import Live

    from mixbench.check import check_suite, report_lines
    from mixbench.report import to_markdown, write_minimal_report
    from mixbench.runner.live import jobs_table
    from mixbench.runner.local import LocalRunner, plan
    from mixbench.tiny import prepare_args

    prepared = prepare_args(args)  # --tiny: fixtures and the scaled-down suite; --dry-run: roots may be absent
    suite, trials, results = _load(args)
    report = check_suite(suite, trials, args.suite, expected=prepared.expected, no_data=prepared.no_data)
    for line in report_lines(report, verbose=False):
        console.print(line, highlight=False, soft_wrap=True)
    if not report.ok and not args.dry_run:
        console.print(f"[red]pre-flight check failed[/] ({len(report.errors)} problems above); nothing was run "
                      f"(mixbench check {prepared.source} lists what was verified)", highlight=False)
        return 2
    jobs = plan(trials, results, args.retry_failed)
    todo = sum(j.state == "queued" for j in jobs)
    console.print(f"[bold]{suite.name}[/]: {len(jobs)} trials, {todo} to run, results in {results}")
    if args.dry_run:
        from mixbench.cost import assumptions, cpu_lines, estimate, group, rich_table, summary

        console.print(jobs_table(jobs, title=f"{suite.name} (dry run)"))
        estimates = estimate(trials, results.parent, report.counts)
        console.print(rich_table(group(estimates), title=f"{suite.name}: estimated cost"))
        queued = {j.config.trial_id for j in jobs if j.state == "queued"}
        console.print(summary(estimates, queued), highlight=False, soft_wrap=True)
        console.print(assumptions(), highlight=False, soft_wrap=True)
        from mixbench.runner.local import visible_gpus

        if not visible_gpus():
            for line in cpu_lines(estimates, results.parent, queued):
                console.print(line, highlight=False, soft_wrap=True)
        return 0 if report.ok else 2
    if args.threads is not None and args.threads < 1:
        raise SuiteError(f"--threads {args.threads}: a trial needs at least one thread; fix: --threads 1 or more, "
                         f"or leave it out")
    check_writable(results)
    if args.executor == "slurm":
        return _submit_to_slurm(args, suite, jobs, results)
    gpus = parse_gpus(args.gpus)
    runner = LocalRunner(gpus=gpus, jobs=args.jobs, threads=args.threads)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a SIGTERM stops the suite like Ctrl-C does
    try:
        if args.no_live or not console.is_terminal:
            runner.run(jobs, on_update=_print_changes())
        else:
            with Live(jobs_table(jobs), console=console, refresh_per_second=2) as live:
                runner.run(jobs, on_update=lambda js: live.update(jobs_table(js, title=suite.name)))
    except KeyboardInterrupt:
        console.print("[yellow]stopped: every trial kept its last checkpoint; run the same command to resume")
        return 130
    console.print(jobs_table(jobs, title=suite.name))
    table = write_minimal_report(results, results / "report")
    print(to_markdown(table))
    import shlex

    # A suite file finds its results only in its own results_dir; after --results, name the folder itself.
    target = str(results) if args.results else args.suite
    console.print(f"report: {results / 'report'} (full report: {shlex.join(['mixbench', 'report', target])})",
                  highlight=False, soft_wrap=True)
    failed = _failed_trials(jobs)
    if failed:
        rerun = shlex.join(["mixbench", "run", args.suite, *(["--results", args.results] if args.results else []),
                            "--retry-failed"])
        console.print(f"[red]{len(failed)} of {len(jobs)} trials failed[/] (reasons above); after fixing the cause, "
                      f"rerun them with: {rerun}", highlight=False, soft_wrap=True)
        return 1
    return 0


def _print_changes():
    """Without a terminal: one line whenever a trial changes state (CI logs, Slurm logs)."""
    seen: dict[str, str] = {}

    def update(jobs) -> None:
        for job in jobs:
            if seen.get(job.config.dirname) != job.state:
                seen[job.config.dirname] = job.state
                note = f" ({job.note})" if job.note else ""
                console.print(f"{job.state:>11}  {job.config.dirname}{note}", highlight=False)

    return update


def _submit_to_slurm(args, suite: Suite, jobs, results: Path) -> int:
    from mixbench.runner.live import jobs_table
    from mixbench.runner.slurm import SlurmError, SlurmOptions, slurm_available, submit

    if not slurm_available():
        console.print("[red]error:[/] --executor slurm: sbatch and squeue are not on PATH; run this on a Slurm "
                      "login node (or use the local executor)", highlight=False, soft_wrap=True)
        return 2
    options = SlurmOptions(partition=args.partition, account=args.account, time=args.time,
                           array_parallelism=args.array_parallelism)
    try:
        submit(jobs, results, options)
    except SlurmError as err:
        console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 1
    console.print(jobs_table(jobs, title=f"{suite.name} (Slurm)"))
    submitted = sum(j.state == "queued" for j in jobs)
    console.print(f"{submitted} trials submitted; follow them with: mixbench status {args.suite}; stop them with: "
                  f"mixbench cancel {args.suite}", highlight=False, soft_wrap=True)
    return 0


def cmd_status(args) -> int:
    from mixbench.runner.live import jobs_table
    from mixbench.runner.slurm import suite_status

    suite, trials, results = _load(args)
    rows = suite_status(trials, results)
    console.print(jobs_table(rows, title=f"{suite.name}: {results}"))
    states = [row.state for row in rows]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    console.print(f"{suite.name}: {len(rows)} trials: {counts}", highlight=False)
    return 0


def cmd_cancel(args) -> int:
    from mixbench.runner.slurm import SlurmError, cancel

    suite, trials, results = _load(args)
    try:
        cancelled = cancel(trials, results)
    except SlurmError as err:
        console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 1
    for config, job_id in cancelled:
        console.print(f"cancelled job {job_id}  {config.dirname}", highlight=False)
    console.print(f"{suite.name}: {len(cancelled)} jobs cancelled; their trials keep their last checkpoint and resume "
                  f"when the suite is submitted again", highlight=False, soft_wrap=True)
    return 0


def cmd_report(args) -> int:
    import shlex

    from mixbench.evidence import BaselineError
    from mixbench.report import markdown, resolve_target, write_report

    results, suite = resolve_target(Path(args.target))
    out = Path(args.out) if args.out else results / "report"
    command = shlex.join(["mixbench", "report", args.target, "--out", str(out),
                          *(f"--claims={c}" for c in args.claims or []), f"--median-window={args.median_window}",
                          *([f"--baseline={args.baseline}"] if args.baseline else []),
                          *([f"--findings={args.findings}"] if args.findings else [])])
    findings = Path(args.findings) if args.findings else None
    if findings and not findings.is_file():
        console.print(f"[red]error:[/] --findings {findings}: no such file; fix: give the Markdown file of "
                      f"findings to include in the report's README", highlight=False, soft_wrap=True)
        return 2
    try:
        made = write_report(results, out, claims_files=args.claims or [], window=args.median_window,
                            command=command, suite=suite, baseline=args.baseline, findings=findings)
    except BaselineError as err:
        console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2
    for table in made.tables["accuracy"]:
        console.print(f"[bold]{table.title}[/]")
        console.print(markdown(table), highlight=False, soft_wrap=True)
    statuses = [c.status for c in made.claims]
    claims = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses))) or "none matched"
    console.print(f"claims: {claims}")
    console.print(f"written to {out} (README.md, results.csv, results.tex, plots/)")
    return 0


def cmd_evaluate(args) -> int:
    from mixbench.evaluate import evaluate_finished
    from mixbench.report import resolve_target
    from mixbench.results import trial_dirs
    from mixbench.suite import load_suite

    results, suite_path = resolve_target(Path(args.target))
    if args.results:
        results = Path(args.results)
    options = load_suite(suite_path).evaluation if suite_path else None
    dirs = trial_dirs(results)
    if not dirs:
        raise FileNotFoundError(f"no trials under {results}; run the suite first (mixbench run SUITE)")
    roots = dict(item.partition("=")[::2] for item in args.data_root or [])
    counts = evaluate_finished(dirs, options, args.corruptions, roots, jobs=args.jobs,
                               log=lambda line: console.print(line, highlight=False, soft_wrap=True))
    console.print(", ".join(f"{n} {what}" for what, n in counts.items()) + f" ({results})", highlight=False)
    return 0


def cmd_show(args) -> int:
    import yaml

    from mixbench.display import DisplayBudget, DisplayNetworkError
    from mixbench.gallery import GalleryUnsupported, write_all, write_gallery
    from mixbench.methods.registry import UnknownMethodError

    if bool(args.method) == bool(args.all):
        raise SuiteError("show: name one METHOD, or --all for every registered method (mixbench ls methods)")
    if args.n < 1:
        raise SuiteError(f"--n {args.n}: a gallery shows at least one sample; fix: --n 4 (one sample per class)")
    hparams = {}
    for item in args.hparam or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SuiteError(f"--hparam {item}: expected KEY=VALUE, e.g. --hparam alpha=1.0")
        hparams[key] = yaml.safe_load(value)
    try:
        lams = [float(v) for v in args.lam.split(",")] if args.lam else None
    except ValueError:
        raise SuiteError(f"--lam {args.lam}: expected mixing ratios in [0, 1], e.g. --lam 0.3,0.5,0.7") from None
    if args.all and (hparams or args.trial_dir):
        raise SuiteError("show --all: --hparam and --from belong to one method; name the METHOD instead")
    options = {"backbone": args.backbone} if args.backbone else {}
    if args.display_steps:
        options["budget"] = DisplayBudget(steps=args.display_steps)
    log = lambda line: console.print(line, highlight=False, soft_wrap=True)  # noqa: E731
    common = dict(dataset=args.dataset, data_root=args.data_root, seed=args.seed, n=args.n,
                  image_size=args.image_size, lams=lams, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                  **options)
    if args.all:
        skipped = write_all(Path(args.out or "gallery"), log=log, **common)
        return 1 if skipped else 0
    out = Path(args.out or f"gallery_{args.method}.png")
    try:
        write_gallery(out, args.method, hparams=hparams, trial_dir=args.trial_dir, log=log, **common)
    except GalleryUnsupported as err:
        console.print(str(err), highlight=False, soft_wrap=True)
        return 1
    except UnknownMethodError as err:
        console.print(f"[red]error:[/] method {args.method} cannot be loaded: {err}", highlight=False, soft_wrap=True)
        return 2
    except (DisplayNetworkError, ValueError) as err:  # a bad hyper-parameter, dataset, --n, --lam or --from
        console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2
    console.print(f"written to {out}")
    return 0


def cmd_ls(args) -> int:
    from mixbench.data import list_datasets
    from mixbench.methods import list_methods
    from mixbench.models import list_backbones

    listing = {
        "methods": list_methods,
        "datasets": list_datasets,
        "backbones": lambda: list_backbones(args.pattern or "*"),
    }
    for kind in [args.kind] if args.kind else ["methods", "datasets"]:
        console.print(f"[bold]{kind}[/]: " + ", ".join(listing[kind]()))
    if not args.kind:
        console.print("[bold]backbones[/]: any timm model (mixbench ls backbones PATTERN), plus the CIFAR variants")
    return 0


def cmd_check(args) -> int:
    from mixbench.check import check_suite, report_lines
    from mixbench.tiny import prepare_args

    prepared = prepare_args(args)
    suite, trials, results = _load(args)
    report = check_suite(suite, trials, args.suite, expected=prepared.expected, no_data=prepared.no_data)
    for line in report_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    if not report.ok:
        console.print(f"{prepared.source}: {len(report.errors)} problems; fix them before running", highlight=False)
        return 2
    console.print(f"{prepared.source}: OK, {len(trials)} trials ({suite.name}), results in {results}", highlight=False)
    return 0


def cmd_bench(args) -> int:
    from mixbench.bench import main as bench_main

    return bench_main(args.bench_args)


def _add_submitted_trials(parser: argparse.ArgumentParser) -> None:
    """The arguments that name a suite's trials as they were submitted (status, cancel)."""
    parser.add_argument("suite")
    parser.add_argument("--only", action="append", metavar="AXIS=V1,V2", help="a subset, e.g. method=mixup")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="the edits the suite was run with")
    parser.add_argument("--results", help="results folder (default: the suite's results_dir)")
    parser.add_argument("--data-root", action="append", metavar="[NAME=]PATH",
                        help="where a dataset lives, as the suite was run with")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixbench",
        description="Benchmark mixup data augmentation: run a suite of dataset × backbone × method × seed trials "
                    "on this machine's GPUs (or CPU) or on Slurm, then report accuracy beside the published claims, "
                    "and cost.",
        epilog="Start with: mixbench run suites/smoke.yaml (a minute or two on a CPU). Each command has its own "
               "--help, e.g. mixbench run --help.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite: every dataset × backbone × method × seed trial")
    run.add_argument("suite")
    run.add_argument("--gpus", help="GPU ids to use, e.g. 0,1 (default: all visible; none: CPU)")
    run.add_argument("--jobs", type=int, default=None, help="parallel trials on CPU (default 1)")
    run.add_argument("--threads", type=int, default=None, metavar="N",
                     help="CPU threads per trial (default: the cores divided among the --jobs trials, or "
                          "MIXBENCH_THREADS); lower it when other work shares the machine")
    run.add_argument("--dry-run", action="store_true", help="print the grid and its estimated cost, and stop")
    run.add_argument("--tiny", action="store_true",
                     help="the suite on miniature fixture data: 1 epoch, 2 images per class, batch 2, small images "
                          "(CI; see docs/cost_model.md)")
    run.add_argument("--only", action="append", metavar="AXIS=V1,V2", help="run a subset, e.g. method=mixup")
    run.add_argument("--retry-failed", action="store_true", help="rerun trials recorded as failed")
    run.add_argument("--data-root", action="append", metavar="[NAME=]PATH", help="where a dataset lives")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="edit the suite, e.g. recipe.epochs=30")
    run.add_argument("--results", help="results folder (default: the suite's results_dir)")
    run.add_argument("--no-live", action="store_true", help="plain log lines instead of the live table")
    run.add_argument("--executor", choices=["local", "slurm"], default="local",
                     help="local: this machine's GPUs (or CPU); slurm: submit job arrays and return (see status)")
    run.add_argument("--partition", help="Slurm partition (default: the suite's resources.slurm, else Slurm's)")
    run.add_argument("--account", help="Slurm account to charge")
    run.add_argument("--time", help="Slurm time limit per job, e.g. 4:00:00 or 2-00:00:00 (default 4:00:00); "
                     "a trial that needs longer checkpoints and requeues itself")
    run.add_argument("--array-parallelism", type=int, metavar="K", help="at most K trials of the array at once")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="each trial's state: done, failed, queued, running (records + Slurm)")
    _add_submitted_trials(status)
    status.set_defaults(func=cmd_status)

    cancel = sub.add_parser("cancel", help="cancel the suite's queued and running Slurm jobs")
    _add_submitted_trials(cancel)
    cancel.set_defaults(func=cmd_cancel)

    check = sub.add_parser("check", help="validate a suite before running it")
    check.add_argument("suite")
    check.add_argument("--data-root", action="append", metavar="[NAME=]PATH")
    check.add_argument("--set", action="append", metavar="KEY=VALUE", help="edit the suite, e.g. recipe.epochs=30")
    check.add_argument("--tiny", action="store_true", help="check the suite's --tiny variant on its fixtures")
    check.set_defaults(func=cmd_check)

    report = sub.add_parser("report", help="tables and plots from a suite's records (README.md, CSV, LaTeX)")
    report.add_argument("target", help="a suite YAML or a results folder")
    report.add_argument("--out", help="output folder, e.g. reports/NAME (default: RESULTS/report)")
    report.add_argument("--claims", action="append", metavar="FILE",
                        help="your own claims CSV (the columns of mixbench/claims/published.csv), compared too")
    report.add_argument("--median-window", choices=["openmixup", "exact"], default="openmixup",
                        help="'median of the last N' for claims: openmixup's epoch >= E-N (N+1 values, how the "
                             "published numbers were made; default) or exactly N values")
    report.add_argument("--baseline", metavar="NAME",
                        help="the method (name or label) every other is compared with, seed by seed (default: "
                             "vanilla, where it ran)")
    report.add_argument("--findings", metavar="FILE.md",
                        help="a Markdown section written from the numbers (e.g. '## Findings ...'), put in the "
                             "README after the budgets; regenerating keeps it")
    report.set_defaults(func=cmd_report)

    evaluate = sub.add_parser("evaluate", help="calibration, corruption, occlusion and FGSM metrics of finished "
                              "trials from their last.pt (skips what is done, resumes what is not)")
    evaluate.add_argument("target", help="a suite YAML (its evaluation: block applies) or a results folder (each "
                          "trial's own)")
    evaluate.add_argument("--corruptions", metavar="all|none|NAME,NAME",
                          help="corruptions to measure, in place of the suite's (e.g. gaussian_noise,contrast)")
    evaluate.add_argument("--results", help="results folder (default: the suite's results_dir)")
    evaluate.add_argument("--data-root", action="append", metavar="NAME=PATH", help="where a dataset lives now")
    evaluate.add_argument("--jobs", type=int, default=1, help="processes making the corrupted sets (cached once)")
    evaluate.set_defaults(func=cmd_evaluate)

    show = sub.add_parser("show", help="a gallery of mixed samples of a method (sources, mask, mix, λ)")
    show.add_argument("method", nargs="?", help="a registered method (mixbench ls methods) or package.module:Class")
    show.add_argument("--all", action="store_true",
                      help="a gallery for every registered method, as OUT/METHOD.png (e.g. --out reports/gallery)")
    show.add_argument("--dataset", help="images from this dataset's val split (default: the --from trial's, else "
                      "synthetic, which needs no files)")
    show.add_argument("--data-root", help="where the dataset lives (default: its usual place)")
    show.add_argument("--out", help="image file to write (default: gallery_METHOD.png; with --all a folder)")
    show.add_argument("--seed", type=int, default=0, help="fixes the images, the draws and any display network")
    show.add_argument("--n", type=int, default=4, help="samples, one per class (default 4)")
    show.add_argument("--lam", metavar="L1,L2,...",
                      help="show these fixed mixing ratios side by side, e.g. 0.3,0.5,0.7 (default: one draw)")
    show.add_argument("--image-size", type=int,
                      help="resolution (default: the dataset's, raised to the first size the method accepts)")
    show.add_argument("--from", dest="trial_dir", metavar="TRIAL_DIR",
                      help="mix with this trial's trained network (AutoMix: its Mix Block too) instead of a "
                           "display network")
    show.add_argument("--backbone", help="the display network a model-aware method (PuzzleMix, AutoMix) is trained "
                      "on before mixing (default resnet_tiny_cifar)")
    show.add_argument("--display-steps", type=int, metavar="N",
                      help="training steps of that display network (default 240 of 32 images; cached)")
    show.add_argument("--cache-dir", help="where display networks are cached (default ~/.cache/mixbench/display, "
                      "or $MIXBENCH_CACHE/display)")
    show.add_argument("--hparam", action="append", metavar="KEY=VALUE",
                      help="override a hyper-parameter of the method card, e.g. alpha=1.0")
    show.set_defaults(func=cmd_show)

    bench = sub.add_parser("bench", help="time and memory of every method's step vs vanilla (see benchmarks/)",
                           add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)

    ls = sub.add_parser("ls", help="list methods, datasets or backbones")
    ls.add_argument("kind", nargs="?", choices=["methods", "datasets", "backbones"])
    ls.add_argument("pattern", nargs="?", help="backbone name pattern, e.g. 'resnet*'")
    ls.set_defaults(func=cmd_ls)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mixbench.results import DamagedFile

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # every option belongs to the benchmark, --help included
        from mixbench.bench import main as bench_main

        return bench_main(argv[1:], prog="mixbench bench")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SuiteError, FileNotFoundError, DamagedFile) as err:
        console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
