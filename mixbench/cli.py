"""`mixbench` command line: thin; it parses arguments and calls the modules that do the work."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from mixbench.suite import Suite, SuiteError, TrialConfig

console = Console()


def _load(args) -> tuple[Suite, list[TrialConfig], Path]:
    from mixbench.suite import expand, load_suite, parse_data_roots

    suite = load_suite(args.suite)
    trials = expand(suite, args.suite, parse_data_roots(getattr(args, "data_root", None), suite))
    for only in getattr(args, "only", None) or []:
        axis, _, values = only.partition("=")
        if axis not in ("dataset", "backbone", "method", "seed") or not values:
            raise SuiteError(f"--only {only}: expected AXIS=V1,V2 with AXIS one of dataset, backbone, method, seed")
        wanted = set(values.split(","))
        trials = [t for t in trials if wanted & {str(v) for v in _axis(t, axis)}]
    results = Path(getattr(args, "results", None) or suite.results_dir) / suite.name
    return suite, trials, results


def _axis(trial: TrialConfig, axis: str) -> list:
    value = trial.axes[axis]
    return value if isinstance(value, list) else [value]


def cmd_run(args) -> int:
    from rich.live import Live

    from mixbench.report import to_markdown, write_minimal_report
    from mixbench.runner.live import jobs_table
    from mixbench.runner.local import LocalRunner, plan

    suite, trials, results = _load(args)
    jobs = plan(trials, results, args.retry_failed)
    todo = sum(j.state == "queued" for j in jobs)
    console.print(f"[bold]{suite.name}[/]: {len(jobs)} trials, {todo} to run, results in {results}")
    if args.dry_run:
        console.print(jobs_table(jobs, title=f"{suite.name} (dry run)"))
        return 0
    gpus = [int(g) for g in args.gpus.split(",")] if args.gpus else None
    runner = LocalRunner(gpus=gpus, jobs=args.jobs)
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
    console.print(to_markdown(table))
    console.print(f"report: {results / 'report'} (full report: mixbench report {args.suite})")
    return 1 if any(j.state == "failed" for j in jobs) else 0


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


def cmd_report(args) -> int:
    from mixbench.report import to_markdown, write_minimal_report

    target = Path(args.target)
    if target.is_file():
        _, _, results = _load(argparse.Namespace(suite=target))
    else:
        results = target
    out = Path(args.out) if args.out else results / "report"
    table = write_minimal_report(results, out)
    console.print(to_markdown(table))
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
    suite, trials, results = _load(args)
    console.print(f"{args.suite}: OK, {len(trials)} trials ({suite.name}), results in {results}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite: every dataset × backbone × method × seed trial")
    run.add_argument("suite")
    run.add_argument("--gpus", help="GPU ids to use, e.g. 0,1 (default: all visible; none: CPU)")
    run.add_argument("--jobs", type=int, default=None, help="parallel trials on CPU (default 1)")
    run.add_argument("--dry-run", action="store_true", help="print the grid and stop")
    run.add_argument("--only", action="append", metavar="AXIS=V1,V2", help="run a subset, e.g. method=mixup")
    run.add_argument("--retry-failed", action="store_true", help="rerun trials recorded as failed")
    run.add_argument("--data-root", action="append", metavar="[NAME=]PATH", help="where a dataset lives")
    run.add_argument("--results", help="results folder (default: the suite's results_dir)")
    run.add_argument("--no-live", action="store_true", help="plain log lines instead of the live table")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a suite before running it")
    check.add_argument("suite")
    check.add_argument("--data-root", action="append", metavar="[NAME=]PATH")
    check.set_defaults(func=cmd_check)

    report = sub.add_parser("report", help="tables from a suite's records")
    report.add_argument("target", help="a suite YAML or a results folder")
    report.add_argument("--out", help="output folder (default: RESULTS/report)")
    report.set_defaults(func=cmd_report)

    ls = sub.add_parser("ls", help="list methods, datasets or backbones")
    ls.add_argument("kind", nargs="?", choices=["methods", "datasets", "backbones"])
    ls.add_argument("pattern", nargs="?", help="backbone name pattern, e.g. 'resnet*'")
    ls.set_defaults(func=cmd_ls)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SuiteError, FileNotFoundError) as err:
        console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
