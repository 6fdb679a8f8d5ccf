"""The report: a self-contained folder of tables (Markdown, CSV, LaTeX) and plots made from trial records.

`write_report(results, out)` writes

* `README.md`: every table, with the plots embedded;
* `results.csv`: one flat row per trial, timm-style columns (model, method, dataset, img_size, top1, ...);
* `summary.csv`: one row per dataset × epochs × backbone × method, the numbers behind the tables;
* `claims.csv`: every compared claim with its measured value and status;
* `results.tex`: the tables as booktabs LaTeX, ready for a paper;
* `plots/*.png` and `plots/*.pdf`.

The tables are: the accuracy grid (backbone × method per dataset and epochs budget, mean ± std over seeds of
the median of the last N epochs and of the best epoch, the best method of each row in bold); how the ranking
moves with the budget (when a results folder holds several); the claims table (Dataset · Model · Metric ·
Claimed · Measured · Δ · Status, see `mixbench.claims` for the matching rule); and the cost table (time per
epoch, images/s, peak memory, each also as a ratio to vanilla on the same backbone). The evidence tables
(`mixbench.evidence`, statistics from `mixbench.stats`) say whether each difference from the baseline is real:
a paired comparison per setting and, across settings, rliable-style aggregates.

Reports read records (and `metrics.jsonl` for curves and the claims' own statistics) only and never re-run
anything. A trial that failed or has not finished is listed with its status, never silently dropped.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from mixbench.claims import (
    MEDIAN_WINDOW,
    Claim,
    ClaimResult,
    Window,
    compare_all,
    load_claims,
    method_display,
    short_backbone,
    status_counts,
    trial_image_size,
)
from mixbench.results import (
    TrialRecord,
    atomic_write_text,
    groups_in_order,
    label_variants,
    pending_record,
    read_metrics,
    read_record,
    records_frame,
    setting_order,
    trial_dirs,
    under_contention,
)
from mixbench.stats import MIN_TOLERANCE_POINTS, mean_interval

DASH = "–"

# ---- loading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialResult:
    """One trial as the report sees it: its record, its per-epoch metrics rows, and its folder."""

    record: TrialRecord
    history: list[dict[str, Any]]
    path: Path


def load_results(results: Path) -> list[TrialResult]:
    """Every trial below `results`. No record yet: pending. An unreadable record: failed, with the reason.

    Each record's `method_label` is its variant label (`results.variant_labels`): two configurations of one
    method are two rows of every table, never pooled as if they were seeds.
    """
    import yaml

    loaded = []
    for trial_dir in trial_dirs(results):
        try:
            record = read_record(trial_dir)
        except (ValueError, ValidationError) as err:  # a record written by another version, or damaged
            config = yaml.safe_load((trial_dir / "config.yaml").read_text())
            record = pending_record(config).model_copy(
                update={"status": "failed", "reason": str(err).splitlines()[0]})
        if record is None:
            record = pending_record(yaml.safe_load((trial_dir / "config.yaml").read_text()))
        loaded.append((record, read_metrics(trial_dir), trial_dir))
    records = label_variants([record for record, _, _ in loaded])
    return [TrialResult(record, history, path) for record, (_, history, path) in zip(records, loaded, strict=True)]


def method_rank(method: str, label: str) -> tuple[int, str]:
    """Sort key of a method row: the method's `display_order` (papers' order; unregistered names last), then label."""
    from mixbench.methods import registry  # imported on use: reading records needs no torch

    return registry.method_rank(method, label)


def ordered_methods(frame: pd.DataFrame) -> list[str]:
    """The method labels of a summary frame, in the papers' order (vanilla, mixup, ...), others after."""
    from mixbench.methods.registry import ordered_labels

    return ordered_labels(zip(frame["method_name"], frame["method"], strict=True))


# ---- numbers ---------------------------------------------------------------------------------------------


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_and_std(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and sample std of the finite values; NaN where undefined (no value; std of one value)."""
    kept = _finite(values)
    mean = statistics.fmean(kept) if kept else math.nan
    std = statistics.stdev(kept) if len(kept) > 1 else math.nan
    return mean, std


def mean_ci(values: Iterable[float | None]) -> tuple[float, float]:
    """The 95 % Student-t interval of the mean of the finite values (mixbench.stats); NaN with fewer than 2."""
    interval = mean_interval(list(values))
    return (interval.low, interval.high) if interval else (math.nan, math.nan)


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.{digits}f}"


def fmt_mean_std(mean: float, std: float, digits: int = 2) -> str:
    if not math.isfinite(mean):
        return DASH
    return fmt(mean, digits) if not math.isfinite(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_signed(value: float | None, digits: int = 2) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value:+.{digits}f}"


# ---- the flat per-trial table ------------------------------------------------------------------------------


# results.csv speaks timm's language first (model, method, dataset, img_size, top1, ...); every other field
# of the record follows in the record's own order, then the hyper-parameters.
RESULTS_RENAMED = {"backbone": "model", "method_label": "method", "method": "method_name"}
RESULTS_LEADING = (
    "model", "method", "method_name", "dataset", "img_size", "epochs", "epochs_done", "seed", "status", "top1",
    "top5", "top1_best", "top1_best_epoch", "top1_median_last_n", "top5_best", "top5_median_last_n", "last_n",
    "images_per_sec", "time_per_epoch_s", "time_total_s", "peak_memory_mb", "param_count", "device", "gpu_name",
    "world_size", "suite", "trial_id", "method_version", "mixbench", "torch", "timm", "cuda", "git_hash",
    "started_at", "updated_at", "reason",
)


def results_frame(trials: Sequence[TrialResult]) -> pd.DataFrame:
    """One flat row per trial (the record's own fields, see `records_frame`), timm-style columns first."""
    frame = records_frame(t.record for t in trials).rename(columns=RESULTS_RENAMED)
    if frame.empty:
        return frame
    frame.insert(0, "img_size", [trial_image_size(t.record) for t in trials])
    rest = [c for c in frame.columns if c not in RESULTS_LEADING and not c.startswith("hparams.")]
    hparams = [c for c in frame.columns if c.startswith("hparams.")]
    frame = frame.reindex(columns=[*RESULTS_LEADING, *rest, *hparams])
    # Integer columns stay integers where some trial has no value yet (a pending trial's best epoch).
    integers = ["img_size", "epochs", "epochs_done", "seed", "top1_best_epoch", "last_n", "param_count", "world_size",
                "method_version"]
    frame = frame.astype({c: "Int64" for c in integers})
    order = sorted(range(len(frame)), key=lambda i: (
        setting_order(frame.at[i, "dataset"]), frame.at[i, "epochs"], setting_order(frame.at[i, "model"]),
        method_rank(frame.at[i, "method_name"], frame.at[i, "method"]), frame.at[i, "seed"]))
    return frame.iloc[order].reset_index(drop=True)


# ---- aggregation -----------------------------------------------------------------------------------------


ACCURACY_STATS = ("top1_median_last_n", "top1_best", "top1")
COST_STATS = ("time_per_epoch_s", "images_per_sec", "peak_memory_mb")
CONTENDED = "†"  # in the cost table: measured under contention
CONTENDED_NOTE = (f"{CONTENDED}: at least one of the trials behind the figure was measured under contention (the "
                  f"machine's load average above its cores, recorded at the start and end of training): other work "
                  f"competed for the cores, so its time is inflated and its ratios to vanilla are not to be trusted; "
                  f"measure costs on a quiet machine (`mixbench run --threads N`, see the README)")


def summarize_trials(trials: Sequence[TrialResult]) -> pd.DataFrame:
    """One row per dataset × epochs × backbone × method label: seeds, accuracy mean/std over finished seeds,
    cost means over every trial that measured it (a running trial's time per epoch is as good as a finished
    one's), and the statuses of the unfinished trials."""
    groups: dict[tuple, list[TrialRecord]] = {}
    for t in trials:
        r = t.record
        groups.setdefault((r.dataset, r.epochs, r.backbone, r.method_label), []).append(r)
    rows = []
    for (dataset, epochs, backbone, label), records in groups.items():
        done = [r for r in records if r.status == "done"]
        row: dict[str, Any] = {
            "dataset": dataset, "epochs": epochs, "backbone": backbone, "method": label,
            "method_name": records[0].method, "last_n": max(r.last_n for r in records),
            "seeds_done": len(done), "seeds_total": len(records),
            "unfinished": status_counts(records, skip="done"),
        }
        for stat in ACCURACY_STATS:
            row[f"{stat}_mean"], row[f"{stat}_std"] = mean_and_std(getattr(r, stat) for r in done)
            row[f"{stat}_ci_low"], row[f"{stat}_ci_high"] = mean_ci(getattr(r, stat) for r in done)
        for stat in COST_STATS:
            row[stat] = mean_and_std(getattr(r, stat) for r in records)[0]
        row["contended"] = sum(under_contention(r) for r in records if r.time_per_epoch_s is not None)
        row["time_total_s"] = mean_and_std(r.time_total_s for r in done)[0]
        rows.append(row)
    rows.sort(key=lambda row: (setting_order((row["dataset"], row["epochs"], row["backbone"])),
                               method_rank(row["method_name"], row["method"])))
    return pd.DataFrame(rows)


# ---- tables ----------------------------------------------------------------------------------------------


@dataclass
class Table:
    """A table ready to render: text cells, the cells in bold, and per-column alignment ("l" or "r")."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    align: str = ""
    caption: str = ""
    label: str = ""
    bold: set[tuple[int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.align = self.align or "l" * len(self.columns)


def accuracy_tables(summary: pd.DataFrame) -> list[Table]:
    """Backbone × method per dataset and epochs budget: rows are (backbone, statistic), cells mean ± std."""
    tables = []
    if summary.empty:
        return tables
    for (dataset, epochs), block in groups_in_order(summary, ["dataset", "epochs"]):
        labels = ordered_methods(block)
        # The window actually used: a trial's median covers min(last_n, epochs) epochs ("median last 10" over a
        # 2-epoch run would misname a median of 2).
        last_n = sorted({int(min(n, epochs)) for n in block["last_n"]})
        stats = [("top1_median_last_n", f"median last {'/'.join(map(str, last_n))}"), ("top1_best", "best")]
        table = Table(
            title=f"Top-1 accuracy (%), {dataset}, {epochs} epochs",
            columns=["Backbone", "Statistic", *labels],
            rows=[],
            align="ll" + "r" * len(labels),
            caption=("Mean ± sample std over seeds of each trial's median top-1 of its last N epochs (N values) "
                     "and of its best epoch; bold: the best method of the row. (k/n): only k of n seeds "
                     "finished; a cell with none finished shows the trials' status."),
            label=f"acc-{dataset}-{epochs}",
        )
        for backbone, rows in groups_in_order(block, "backbone"):
            by_label = {row["method"]: row for _, row in rows.iterrows()}
            for stat, stat_name in stats:
                cells, means = [], []
                for label in labels:
                    row = by_label.get(label)
                    cells.append(_accuracy_cell(row, stat))
                    mean = row[f"{stat}_mean"] if row is not None else math.nan
                    means.append(round(mean, 2) if math.isfinite(mean) else math.nan)
                i = len(table.rows)
                table.rows.append([backbone, stat_name, *cells])
                finite = [m for m in means if math.isfinite(m)]
                if len(finite) > 1:
                    table.bold |= {(i, 2 + j) for j, m in enumerate(means) if m == max(finite)}
        tables.append(table)
    return tables


def _accuracy_cell(row: pd.Series | None, stat: str) -> str:
    if row is None:
        return DASH
    if row["seeds_done"] == 0:
        return row["unfinished"] or DASH
    text = fmt_mean_std(row[f"{stat}_mean"], row[f"{stat}_std"])
    if row["seeds_done"] < row["seeds_total"]:
        text += f" ({row['seeds_done']}/{row['seeds_total']})"
    return text


def ranking_tables(summary: pd.DataFrame) -> list[Table]:
    """For a dataset and backbone run at several budgets: each method's median top-1 and rank per budget."""
    tables = []
    if summary.empty:
        return tables
    for (dataset, backbone), block in groups_in_order(summary, ["dataset", "backbone"]):
        budgets = sorted(set(block["epochs"]))
        if len(budgets) < 2:
            continue
        ranks: dict[tuple[int, str], int] = {}
        for epochs in budgets:
            at = block[(block["epochs"] == epochs) & block["top1_median_last_n_mean"].notna()]
            order = at.sort_values("top1_median_last_n_mean", ascending=False, kind="stable")["method"]
            ranks.update({(epochs, label): i + 1 for i, label in enumerate(order)})
        table = Table(
            title=f"Ranking by budget, {dataset}, {backbone}",
            columns=["Method", *[f"{e} ep" for e in budgets]],
            rows=[],
            align="l" + "r" * len(budgets),
            caption="Median top-1 of the last N epochs, mean ± std over seeds, and the method's rank (#) at each "
                    "budget. Rankings at short budgets say little about long ones.",
            label=f"rank-{dataset}-{backbone}",
        )
        for label in ordered_methods(block):
            cells = []
            for epochs in budgets:
                match = block[(block["epochs"] == epochs) & (block["method"] == label)]
                if match.empty:
                    cells.append(DASH)
                    continue
                row = match.iloc[0]
                rank = ranks.get((epochs, label))
                cell = _accuracy_cell(row, "top1_median_last_n")
                cells.append(f"{cell} (#{rank})" if rank else cell)
            table.rows.append([label, *cells])
        tables.append(table)
    return tables


def claims_table(results: Sequence[ClaimResult], window: Window = MEDIAN_WINDOW) -> Table:
    """Dataset · Model · Epochs · Metric · Claimed · Measured · Δ · Status · Note · Source, as the AutoMix
    paper's benchmark listing reads (Dataset, Model, Metric, value), with what mixbench measured beside it."""
    window_text = ("openmixup's window, epoch ≥ E − N: N+1 values" if window == "openmixup"
                   else "exactly the last N values")
    table = Table(
        title="Published claims",
        columns=["Dataset", "Model", "Epochs", "Metric", "Claimed", "Measured", "Δ (95 % CI)", "Status", "Note",
                 "Source"],
        rows=[],
        align="llrlrrrlll",
        caption=(f"Measured: the claim's own statistic per trial, mean ± sample std over seeds (median of the "
                 f"last N: {window_text}). Δ: measured − claimed, with its 95 % t-interval over seeds. "
                 f"Reproduced: the claim lies inside that interval (with 1–2 seeds: or within "
                 f"{MIN_TOLERANCE_POINTS:g} points); partial: fewer epochs than the claim; not run: no finished "
                 f"trial of that setting."),
        label="claims",
    )
    ordered = sorted(results, key=lambda cr: (
        cr.claim.dataset, cr.claim.mixbench_backbone or "", method_rank(cr.claim.method, cr.method_label),
        cr.claim.epochs or 0, cr.claim.metric, cr.claim.short_source))
    for cr in ordered:
        c = cr.claim
        measured = DASH
        if cr.measured is not None:
            seeds = f"{cr.seeds} seed" + ("s" if cr.seeds != 1 else "")
            measured = f"{fmt_mean_std(cr.measured, cr.std if cr.std is not None else math.nan)} ({seeds})"
        table.rows.append([
            c.dataset, f"{short_backbone(c.backbone)} + {method_display(c.method, cr.method_label)}",
            str(c.epochs) if c.epochs is not None else "?", c.describe_metric(), fmt(c.value), measured,
            _delta_with_interval(cr), cr.status, cr.note, c.short_source,
        ])
    return table


def _delta_with_interval(cr: ClaimResult) -> str:
    ci = cr.delta_interval
    if ci is None:
        return fmt_signed(cr.delta)
    return f"{fmt_signed(cr.delta)} [{fmt_signed(ci.low)}, {fmt_signed(ci.high)}]"


def claims_frame(results: Sequence[ClaimResult]) -> pd.DataFrame:
    rows = []
    for cr in results:
        c = cr.claim
        ci, delta_ci = cr.interval, cr.delta_interval
        rows.append({
            "dataset": c.dataset, "backbone": c.backbone, "mixbench_backbone": c.mixbench_backbone,
            "method": c.method, "method_label": cr.method_label, "epochs": c.epochs, "metric": c.metric,
            "statistic": c.statistic.describe(), "claimed": c.value, "measured": cr.measured, "std": cr.std,
            "seeds": cr.seeds, "seeds_total": cr.seeds_total, "epochs_compared": cr.epochs, "delta": cr.delta,
            "tolerance": cr.tolerance, "status": cr.status, "note": cr.note, "source": c.source,
            "ci_low": ci.low if ci else None, "ci_high": ci.high if ci else None,
            "delta_ci_low": delta_ci.low if delta_ci else None, "delta_ci_high": delta_ci.high if delta_ci else None,
        })
    return pd.DataFrame(rows)


def cost_table(summary: pd.DataFrame) -> Table:
    """Time per epoch, images/s and peak memory per dataset × backbone × method (pooled over budgets), each
    with its ratio to vanilla on the same dataset and backbone."""
    table = Table(
        title="Cost",
        columns=["Dataset", "Backbone", "Method", "Time/epoch (s)", "× vanilla", "Images/s", "× vanilla",
                 "Peak memory (MB)", "× vanilla"],
        rows=[],
        align="lll" + "r" * 6,
        caption=("Means over every trial that measured them, all budgets pooled. Time per epoch includes "
                 "evaluation; images/s is training throughput; peak memory is CUDA max allocated on GPU and "
                 "the process's max RSS on CPU. Ratios are to vanilla on the same dataset and backbone."),
        label="cost",
    )
    if summary.empty:
        return table
    pooled = (summary.assign(contended=summary.get("contended", 0))
              .groupby(["dataset", "backbone", "method", "method_name"], sort=False)
              .agg({**{stat: "mean" for stat in COST_STATS}, "contended": "sum"}).reset_index())
    for (_, _), block in groups_in_order(pooled, ["dataset", "backbone"]):
        vanilla = block[block["method_name"] == "vanilla"]
        base = vanilla.iloc[0] if not vanilla.empty else None
        ordered = sorted(block.itertuples(index=False), key=lambda r: method_rank(r.method_name, r.method))
        for row in ordered:
            # † marks figures (or their vanilla baseline) measured while the machine ran more than its cores' worth.
            marked = row.contended or (base is not None and base["contended"])
            cells = [row.dataset, row.backbone, row.method + (f" {CONTENDED}" if marked else "")]
            for stat, digits in (("time_per_epoch_s", 2), ("images_per_sec", 1), ("peak_memory_mb", 0)):
                value = getattr(row, stat)
                ratio = value / base[stat] if base is not None and base[stat] else math.nan
                cells += [fmt(value, digits), DASH if not math.isfinite(ratio) else f"{ratio:.2f}"]
            table.rows.append(cells)
    if (pooled["contended"] > 0).any():
        table.caption += " " + CONTENDED_NOTE
    return table


def budgets_table(trials: Sequence[TrialResult]) -> Table:
    """What each epochs budget was and how long it took: compute summed over trials and the wall-clock span."""
    table = Table(
        title="Budgets",
        columns=["Dataset", "Epochs", "Trials", "Status", "Compute (trial-hours)", "Wall clock (h)", "Device"],
        rows=[],
        align="lrrlrrl",
        caption=("Compute: training and evaluation time summed over the trials. Wall clock: from the first "
                 "trial's start to the last record update (trials may run in parallel)."),
        label="budgets",
    )
    groups: dict[tuple[str, int], list[TrialRecord]] = {}
    for t in trials:
        groups.setdefault((t.record.dataset, t.record.epochs), []).append(t.record)
    for (dataset, epochs), records in sorted(groups.items(), key=lambda group: setting_order(group[0])):
        starts = [_when(r.started_at) for r in records if r.started_at]
        ends = [_when(r.updated_at) for r in records if r.updated_at]
        wall = (max(ends) - min(starts)).total_seconds() / 3600 if starts and ends else math.nan
        devices = sorted({r.gpu_name or r.device for r in records if r.status != "pending"})
        table.rows.append([
            dataset, str(epochs), str(len(records)), status_counts(records),
            fmt(sum(r.time_total_s for r in records) / 3600), fmt(wall), ", ".join(devices) or DASH,
        ])
    return table


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def unfinished_table(trials: Sequence[TrialResult]) -> Table:
    table = Table(title="Unfinished trials", columns=["Trial", "Status", "Epochs done", "Reason"], rows=[],
                  align="llrl", label="unfinished")
    for t in trials:
        r = t.record
        if r.status != "done":
            table.rows.append([t.path.name, r.status, f"{r.epochs_done}/{r.epochs}", r.reason or DASH])
    return table


# ---- rendering -------------------------------------------------------------------------------------------


def markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table (bold cells as **x**, '|' escaped)."""

    def cell(i: int, j: int, text: str) -> str:
        text = text.replace("|", "\\|")
        return f"**{text}**" if (i, j) in table.bold and text else text

    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in table.align) + "|"
    body = ["| " + " | ".join(cell(i, j, text) for j, text in enumerate(row)) + " |"
            for i, row in enumerate(table.rows)]
    return "\n".join([header, rule, *body]) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "×": r"$\times$", "Δ": r"$\Delta$", "–": "--", "−": "$-$", "≤": r"$\leq$", "≥": r"$\geq$",
    "λ": r"$\lambda$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex(table: Table) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); bold cells as \\textbf{...}."""

    def cell(i: int, j: int, text: str) -> str:
        text = latex_escape(text)
        return f"\\textbf{{{text}}}" if (i, j) in table.bold and text else text

    caption = latex_escape(table.title + (". " + table.caption if table.caption else ""))
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{caption}}}",
        *([rf"\label{{tab:{table.label}}}"] if table.label else []),
        rf"\begin{{tabular}}{{{table.align}}}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
        *(" & ".join(cell(i, j, text) for j, text in enumerate(row)) + r" \\" for i, row in enumerate(table.rows)),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def to_markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (what `mixbench run` prints after a suite)."""
    return markdown(Table(title="", columns=[str(c) for c in frame.columns],
                          rows=[[str(v) for v in row] for row in frame.itertuples(index=False)]))


# ---- the report folder -----------------------------------------------------------------------------------


@dataclass
class Report:
    """What `write_report` made: the folder, its tables, and the claims it compared."""

    out: Path
    trials: list[TrialResult]
    summary: pd.DataFrame
    tables: dict[str, list[Table]]
    claims: list[ClaimResult]
    plots: list[Path]


def resolve_target(target: Path) -> tuple[Path, Path | None]:
    """A results folder as it is; a suite YAML: its results folder (<results_dir>/<name>) and the suite."""
    if target.is_file():
        from mixbench.suite import load_suite

        suite = load_suite(target)
        return Path(suite.results_dir) / suite.name, target
    return target, None


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(f"{prefix}.{key}", item).items()}
    return {prefix: value}


def rerun_commands(suite_path: Path, trials: Sequence[TrialResult]) -> list[str]:
    """`mixbench run SUITE [--set recipe.KEY=VALUE ...]`, one per distinct recipe and evaluation among the
    trials: the recipe and evaluation keys where the trials differ from the suite file become --set edits (e.g.
    a second budget), and so do the seeds when the trials ran other seeds than the suite now lists; methods
    the suite gained since the records were made are left out with --only (records older than the suite
    file), and so are the suite's datasets a group of trials did not run (a study that runs each size at its
    own budgets)."""
    import json
    import shlex

    from mixbench.suite import load_suite

    suite = load_suite(suite_path)
    base = _flatten("recipe", suite.recipe.model_dump(mode="json"))
    base |= _flatten("evaluation", suite.evaluation.model_dump(mode="json"))

    def settings(record: TrialRecord) -> str:
        return json.dumps({"recipe": record.config.get("recipe") or {},
                           "evaluation": record.config.get("evaluation") or {}}, sort_keys=True)

    groups: dict[str, list[TrialRecord]] = {}
    for t in trials:
        groups.setdefault(settings(t.record), []).append(t.record)
    suite_datasets = [d.key for d in suite.datasets]
    commands = []
    for text in sorted(groups, key=lambda text: (json.loads(text)["recipe"].get("epochs") or 0, text)):
        flat = {k: v for part in ("recipe", "evaluation") for k, v in _flatten(part, json.loads(text)[part]).items()}
        sets = [f"--set={key}={value if isinstance(value, str) else json.dumps(value)}"
                for key, value in flat.items() if key in base and base[key] != value]
        group = groups[text]
        seeds = sorted({r.seed for r in group})
        if seeds != sorted(suite.seeds):
            sets.append(f"--set=seeds={json.dumps(seeds, separators=(',', ':'))}")
        ran = {r.dataset for r in group}
        if ran < set(suite_datasets):
            sets.append(f"--only=dataset={','.join(d for d in suite_datasets if d in ran)}")
        labels = {r.method_label: r.method for r in group}
        if set(labels) < {m.display for m in suite.methods}:
            ordered = sorted(labels, key=lambda label: method_rank(labels[label], label))
            sets.append(f"--only=method={','.join(ordered)}")
        commands.append(shlex.join(["mixbench", "run", str(suite_path), *sets]))
    return commands


def write_report(
    results: Path,
    out: Path,
    claims_files: Sequence[str | Path] = (),
    window: Window = MEDIAN_WINDOW,
    command: str | None = None,
    suite: Path | None = None,
    baseline: str | None = None,
    findings: Path | None = None,
) -> Report:
    """Write the report folder `out` for the trials under `results`.

    `claims_files`: the user's claims CSVs, compared with the published ones. `command`: the command that
    regenerates the report; with the `suite` file the trials came from, README.md also gives the commands
    that rerun them. `baseline`: the method (label or name) every other is compared with, seed by seed;
    None: vanilla, where it ran. `findings`: a Markdown file a person wrote from the numbers, put verbatim
    after the budgets (so that regenerating the report keeps it).
    """
    from mixbench import evidence, plots, report_robustness

    trials = load_results(results)
    if not trials:
        raise FileNotFoundError(f"no trials under {results}; run the suite first (mixbench run SUITE)")
    rerun = rerun_commands(suite, trials) if suite else []
    claims: list[Claim] = load_claims(claims_files)
    compared = compare_all(claims, trials, window)
    summary = summarize_trials(trials)
    base_name = baseline or evidence.DEFAULT_BASELINE
    proof = evidence.collect(trials, base_name, strict=baseline is not None)
    paired = evidence.paired_frame(proof)
    aggregate = evidence.aggregate_table(proof, base_name)
    tables = {
        "budgets": [budgets_table(trials)],
        "unfinished": [unfinished_table(trials)],
        "accuracy": accuracy_tables(summary),
        "paired": evidence.paired_tables(proof, base_name),
        "aggregate": [aggregate] if aggregate else [],
        "ranking": ranking_tables(summary),
        "claims": [claims_table(compared, window)],
        "cost": [cost_table(summary)],
        **report_robustness.tables(trials),  # calibration, robustness, per corruption (mixbench evaluate)
    }
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "gain_over_vanilla": plots.gain_over_vanilla(summary),
        "top1_vs_epoch": plots.top1_vs_epoch(curves_frame(trials)),
        "measured_vs_claimed": plots.measured_vs_claimed(claims_frame(compared)),
        "accuracy_vs_cost": plots.accuracy_vs_cost(summary),
        "paired_differences": plots.paired_differences(paired),
        "average_rank": plots.average_rank(evidence.rank_frame(proof)),
        "gain_by_size": plots.gain_by_size(paired, sizes_frame(trials)),
        **report_robustness.figures(trials),  # accuracy vs ECE, reliability diagrams
    }
    written = []
    for name, figure in figures.items():
        if figure is not None:
            written += plots.save_figure(figure, out / "plots", name)
        else:  # a plot an earlier report drew may no longer apply
            for suffix in (".png", ".pdf"):
                (out / "plots" / f"{name}{suffix}").unlink(missing_ok=True)
    made = {name for name, figure in figures.items() if figure is not None}

    atomic_write_text(out / "results.csv", results_frame(trials).to_csv(index=False))
    atomic_write_text(out / "summary.csv", evidence.with_paired_columns(summary, paired).to_csv(index=False))
    atomic_write_text(out / "claims.csv", claims_frame(compared).to_csv(index=False))
    atomic_write_text(out / "results.tex", latex_document(tables))
    text = findings.read_text() if findings else None
    atomic_write_text(out / "README.md",
                      readme(results, trials, tables, compared, made, window, command, rerun, text))
    return Report(out, trials, summary, tables, compared, written)


def sizes_frame(trials: Sequence[TrialResult]) -> pd.DataFrame:
    """Each dataset label's dataset name and training images per class (`limit_per_class`; NaN without one)."""
    rows = {}
    for t in trials:
        dataset = t.record.config.get("dataset") or {}
        rows[t.record.dataset] = {"dataset": t.record.dataset, "dataset_name": dataset.get("name", t.record.dataset),
                                  "per_class": dataset.get("limit_per_class")}
    return pd.DataFrame(list(rows.values()), columns=["dataset", "dataset_name", "per_class"]).astype(
        {"per_class": float})


def latex_document(tables: dict[str, list[Table]]) -> str:
    body = [latex(t) for name, ts in tables.items() if name != "unfinished" for t in ts if t.rows]
    header = "% Generated by `mixbench report`; needs \\usepackage{booktabs}.\n"
    return header + "\n".join(body)


def curves_frame(trials: Sequence[TrialResult]) -> pd.DataFrame:
    """Per-epoch headline top-1 of every trial with metrics (finished or not), for the learning curves."""
    rows = [
        {"dataset": t.record.dataset, "epochs": t.record.epochs, "backbone": t.record.backbone,
         "method": t.record.method_label, "method_name": t.record.method, "seed": t.record.seed,
         "status": t.record.status, "epoch": row["epoch"], "top1": row["top1"]}
        for t in trials for row in t.history if row.get("top1") is not None
    ]
    columns = ["dataset", "epochs", "backbone", "method", "method_name", "seed", "status", "epoch", "top1"]
    return pd.DataFrame(rows, columns=columns)


def readme(
    results: Path,
    trials: Sequence[TrialResult],
    tables: dict[str, list[Table]],
    compared: Sequence[ClaimResult],
    plots_made: set[str],
    window: Window,
    command: str | None,
    rerun: Sequence[str],
    findings: str | None = None,
) -> str:
    records = [t.record for t in trials]
    suites = sorted({r.suite for r in records})
    lines = [f"# mixbench report: {', '.join(suites)}", ""]
    lines += [f"{len(records)} trials ({status_counts(records)}) read from the records under `{results}`. "
              "Reports read records only; nothing here was re-run to make them.", ""]
    if command or rerun:
        lines += ["To regenerate:", "", "```sh", *rerun, *([command] if command else []), "```", ""]
    lines += _environment(records)
    lines += _variants_note(trials)

    def section(title: str, key: str, plot: str | None = None, intro: str = "") -> None:
        shown = [t for t in tables[key] if t.rows]
        if not shown and not (plot and plot in plots_made):
            return
        lines.extend([f"## {title}", ""])
        if intro:
            lines.extend([intro, ""])
        for table in shown:
            if len(shown) > 1 or table.title != title:
                lines.extend([f"### {table.title}", ""])
            if table.caption:
                lines.extend([table.caption, ""])
            lines.append(markdown(table))
        if plot and plot in plots_made:
            lines.extend([f"![{plot}](plots/{plot}.png)", ""])

    section("Budgets", "budgets")
    if findings:
        lines.extend([findings.strip(), ""])
    section("Unfinished trials", "unfinished",
            intro="Trials that failed, are still running or never started; their seeds are left out of means.")
    section("Accuracy", "accuracy", "gain_over_vanilla")
    section("Is the difference real?", "paired", "paired_differences", intro=PAIRED_INTRO)
    if "gain_by_size" in plots_made:
        lines.extend(["## Gain by training-set size and budget", "",
                      "The paired differences above, per method against the training-set size, one panel per budget "
                      "(training images seen per class where the grid matches compute across sizes, else epochs).",
                      "", "![gain_by_size](plots/gain_by_size.png)", ""])
    section("Across settings", "aggregate", "average_rank")
    if "top1_vs_epoch" in plots_made:
        lines.extend(["## Top-1 vs epoch", "", "Mean over seeds (line) and min–max over seeds (band).", "",
                      "![top1_vs_epoch](plots/top1_vs_epoch.png)", ""])
    section("Ranking across budgets", "ranking")
    if compared:
        counts = Counter(cr.status for cr in compared)
        section("Claims", "claims", "measured_vs_claimed",
                intro=", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + ".")
    else:
        datasets = sorted({r.dataset for r in records}, key=setting_order)
        lines.extend(["## Claims", "",
                      f"No published claim has the setting (dataset, backbone, image size) of these trials "
                      f"({', '.join(datasets)}). Add your own with `mixbench report ... --claims FILE` "
                      "(the columns of mixbench/claims/published.csv).", ""])
    lines.extend([_statistics_note(window), ""])
    section("Cost", "cost", "accuracy_vs_cost")
    from mixbench.report_robustness import readme_lines

    lines.extend(readme_lines(tables, plots_made))
    lines.extend(["## Files", "",
                  "`results.csv` (one row per trial), `summary.csv` (one row per dataset × epochs × backbone × "
                  "method, with each mean's 95 % interval and the paired comparison with the baseline), "
                  "`claims.csv`, `results.tex` (booktabs), `plots/` (PNG and PDF).", ""])
    return "\n".join(lines)


PAIRED_INTRO = (
    "Each method against the baseline (`mixbench report --baseline NAME`; vanilla by default), seed by seed: "
    "trials that differ only in the method share the seed, hence the initialisation and the data order, so the "
    "per-seed differences cancel what the seed alone does. Exact sign-flip permutation test, Holm-corrected "
    "over the methods of each table; the captions say what the number of seeds allows. See \"How mixbench "
    "compares methods\" in mixbench's README.")


def _statistics_note(window: Window) -> str:
    claims_window = ("openmixup's reading, every epoch ≥ E − N, i.e. N+1 values, as the published numbers were "
                     "made" if window == "openmixup" else "exactly the last N values")
    return ("Statistics: the accuracy tables use each record's `top1_median_last_n`, the median of exactly the "
            f"last N epochs (N values); the claims table computes each claim's own statistic from "
            f"`metrics.jsonl`, with \"median of the last N\" taken as {claims_window}.")


def _variants_note(trials: Sequence[TrialResult]) -> list[str]:
    """Name the rows that one method label was split into (see `load_results`), so no reader takes them for one."""
    split = sorted({t.record.method_label for t in trials
                    if t.record.method_label != t.record.config.get("method_label", t.record.method_label)})
    if not split:
        return []
    return ["**Several settings of one method**: trials that differ in more than the seed are separate rows, "
            "labelled by what differs (never pooled as seeds): " + "; ".join(f"`{label}`" for label in split) + ".",
            ""]


def _environment(records: Sequence[TrialRecord]) -> list[str]:
    ran = [r for r in records if r.status != "pending"]
    if not ran:
        return []

    def values(get: Callable[[TrialRecord], Any]) -> str:
        return ", ".join(sorted({str(v) for v in map(get, ran) if v})) or DASH

    return [
        f"Environment: device {values(lambda r: r.gpu_name or r.device)}; "
        f"mixbench {values(lambda r: r.versions.get('mixbench'))}, torch {values(lambda r: r.versions.get('torch'))}, "
        f"timm {values(lambda r: r.versions.get('timm'))}; git {values(lambda r: r.git_hash)}.",
        "",
    ]


# ---- the quick summary `mixbench run` prints ----------------------------------------------------------------


def accuracy_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary (`summarize_trials`) as `mixbench run` prints it: one row per dataset × epochs × backbone ×
    method, seeds done, top-1 (median of last N, best, last) as mean ± std. Budgets are never pooled: a 6-epoch
    and a 12-epoch trial are different rows."""
    rows = []
    for row in summary.to_dict("records"):
        rows.append({
            "dataset": row["dataset"],
            "backbone": row["backbone"],
            "method": row["method"],
            "seeds": f"{row['seeds_done']}/{row['seeds_total']}",
            # the window used: a 2-epoch run's median is of 2 epochs
            f"top1 (median last {min(row['last_n'], row['epochs'])})": fmt_mean_std(
                row["top1_median_last_n_mean"], row["top1_median_last_n_std"]),
            "top1 (best)": fmt_mean_std(row["top1_best_mean"], row["top1_best_std"]),
            "top1 (last)": fmt_mean_std(row["top1_mean"], row["top1_std"]),
            "epochs": row["epochs"],
            "status": row["unfinished"] or "done",
        })
    return pd.DataFrame(rows)


def write_minimal_report(results: Path, out: Path) -> pd.DataFrame:
    """`results.csv` (one row per trial) and `accuracy.md` / `accuracy.csv` (the grid) under `out`."""
    trials = load_results(results)
    if not trials:
        raise FileNotFoundError(f"no trials under {results}; run the suite first (mixbench run SUITE)")
    table = accuracy_table(summarize_trials(trials))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.csv", results_frame(trials).to_csv(index=False))
    atomic_write_text(out / "accuracy.csv", table.to_csv(index=False))
    atomic_write_text(out / "accuracy.md", to_markdown(table))
    return table
