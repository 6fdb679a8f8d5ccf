"""The report's evidence: whether a method's difference from the baseline is real, from the trials' records.

`mixbench.stats` does the statistics on numbers; this module picks the numbers out of the trials and lays the
answers out as report tables and tidy frames:

* `paired_tables`: per setting (dataset × epochs × backbone), each method against the baseline seed by seed;
* `aggregate_table`: across settings (two or more), IQM of normalised scores, probability of improvement
  and average rank;
* `paired_frame` / `rank_frame`: the same numbers for summary.csv and the plots.

The statistic compared is the accuracy tables' headline, each finished trial's `top1_median_last_n`. Only
finished trials count; a seed that one side lacks (failed, pending, no finite accuracy) is left unpaired and
the table says which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from mixbench import stats
from mixbench.report import DASH, Table, TrialResult, fmt, fmt_mean_std, fmt_signed, mean_and_std, method_rank
from mixbench.results import setting_order

STATISTIC = "top1_median_last_n"
DEFAULT_BASELINE = "vanilla"

Setting = tuple[str, int, str]  # dataset, epochs, backbone


class BaselineError(ValueError):
    """`--baseline NAME` names no method of the results, or several configurations of one."""


@dataclass(frozen=True)
class Cell:
    """One method in one setting: its per-seed values and, unless it is the baseline, its comparison."""

    label: str
    method_name: str
    values: dict[int, float]  # seed -> statistic (NaN where a finished trial recorded none)
    comparison: stats.Comparison | None

    @property
    def finite(self) -> list[float]:
        return list(stats.finite(list(self.values.values())))


@dataclass(frozen=True)
class SettingEvidence:
    setting: Setting
    baseline: Cell | None  # None: the baseline has no finished trial here (or, by default, several)
    methods: list[Cell]  # the others, in table order
    note: str = ""  # why there is no baseline, when it is not simply absent


def _seed_values(trials: Sequence[TrialResult]) -> dict[Setting, dict[str, tuple[str, dict[int, float]]]]:
    """{setting: {method label: (method name, {seed: value})}} over the finished trials."""
    cells: dict[Setting, dict[str, tuple[str, dict[int, float]]]] = {}
    for t in trials:
        r = t.record
        if r.status != "done":
            continue
        value = getattr(r, STATISTIC)
        by_label = cells.setdefault((r.dataset, r.epochs, r.backbone), {})
        by_label.setdefault(r.method_label, (r.method, {}))[1][r.seed] = math.nan if value is None else float(value)
    return cells


def baseline_label(labels: dict[str, str], baseline: str, setting: Setting) -> str | None:
    """The label in `labels` ({label: method name}) that is the baseline: the label itself, else the one label
    of that method; None when absent. Two labels of the method (e.g. at two α) are ambiguous: an error."""
    if baseline in labels:
        return baseline
    matches = sorted(label for label, name in labels.items() if name == baseline)
    if len(matches) > 1:
        dataset, epochs, backbone = setting
        raise BaselineError(f"--baseline {baseline}: {dataset}, {epochs} ep, {backbone} has {len(matches)} "
                            f"configurations of it ({', '.join(matches)}); fix: --baseline one of those labels")
    return matches[0] if matches else None


def collect(trials: Sequence[TrialResult], baseline: str = DEFAULT_BASELINE,
            strict: bool = False) -> list[SettingEvidence]:
    """Every setting's cells, compared with `baseline` (a method label or name) where it ran there.

    `strict`: the user named the baseline, so a baseline that ran in no setting, or ambiguously, is an error;
    by default the setting's table says so instead."""
    evidence = []
    for setting, by_label in sorted(_seed_values(trials).items(), key=lambda item: setting_order(item[0])):
        names = {label: name for label, (name, _) in by_label.items()}
        note = ""
        try:
            base = baseline_label(names, baseline, setting)
        except BaselineError as err:
            if strict:
                raise
            base, note = None, str(err)
        order = sorted(by_label, key=lambda label: method_rank(names[label], label))
        others = [label for label in order if label != base]
        comparisons: list[stats.Comparison | None] = [None] * len(others)
        if base is not None:
            comparisons = list(stats.compare_with_baseline({label: by_label[label][1] for label in others},
                                                           by_label[base][1]))
        evidence.append(SettingEvidence(
            setting,
            Cell(base, names[base], by_label[base][1], None) if base is not None else None,
            [Cell(label, names[label], by_label[label][1], c) for label, c in zip(others, comparisons, strict=True)],
            note,
        ))
    if strict and evidence and all(e.baseline is None for e in evidence):
        labels = sorted({c.label for e in evidence for c in e.methods})
        raise BaselineError(f"--baseline {baseline}: no finished trial of that method in these results; fix: "
                            f"--baseline one of {', '.join(labels)}")
    return evidence


# ---- text ------------------------------------------------------------------------------------------------


def fmt_interval(interval: stats.Interval | None, signed: bool = False, digits: int = 2) -> str:
    if interval is None:
        return "n/a"
    text = fmt_signed if signed else fmt
    return f"[{text(interval.low, digits)}, {text(interval.high, digits)}]"


def fmt_p(p: float) -> str:
    return DASH if not math.isfinite(p) else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def seed_count_note(n: int, comparisons: int) -> str:
    """What n paired seeds allow with Holm over `comparisons` methods, e.g. "3 paired seeds: no p below 0.25,
    so no difference can be declared at α = 0.05 (8 seeds needed for 5 methods)"."""
    smallest = stats.min_p_value(n)
    text = f"{n} paired seeds: no p below 2/2^{n} = {smallest:.3g}"
    if comparisons > 1:
        text += f", none below {min(1.0, comparisons * smallest):.3g} after Holm over {comparisons} methods"
    if comparisons * smallest >= stats.ALPHA:
        needed = stats.seeds_needed(comparisons)
        text += (f", so no difference can be declared at α = {stats.ALPHA:g} whatever the accuracies "
                 f"({needed} seeds needed for {comparisons} method{'s' * (comparisons != 1)})")
    return text


def paired_tables(evidence: Sequence[SettingEvidence], baseline: str = DEFAULT_BASELINE) -> list[Table]:
    """Per setting: each method's cell (mean ± std, 95 % interval, seeds) and its paired comparison."""
    tables = []
    for e in evidence:
        dataset, epochs, backbone = e.setting
        base_name = e.baseline.label if e.baseline else baseline
        table = Table(
            title=f"Paired comparison with {base_name}, {dataset}, {epochs} epochs, {backbone}",
            columns=["Method", "Top-1", "95 % CI", "Seeds", "Paired", f"Δ vs {base_name}", "95 % CI of Δ", "p",
                     "p (Holm)", "Verdict", "Detectable Δ", "Note"],
            rows=[],
            align="lrrrrrrrrlrl",
            label=f"paired-{dataset}-{epochs}-{backbone}",
        )
        for cell in ([e.baseline] if e.baseline else []) + e.methods:
            finite = cell.finite
            row = [cell.label + (" (baseline)" if cell is e.baseline else ""), fmt_mean_std(*mean_and_std(finite)),
                   fmt_interval(stats.mean_interval(finite)) if finite else DASH, str(len(finite))]
            c = cell.comparison
            if c is None:
                row += [DASH] * 7 + ["no baseline trial in this setting" if e.baseline is None else ""]
            else:
                p = c.paired
                row += [str(p.n), fmt_signed(p.mean), fmt_interval(p.interval, signed=True), fmt_p(p.p_value),
                        fmt_p(c.p_holm), c.verdict, _fmt_mdd(p.mdd), p.unpaired_note(cell.label, base_name)]
                if c.significant:
                    table.bold |= {(len(table.rows), 5), (len(table.rows), 9)}
            table.rows.append(row)
        table.caption = _paired_caption(e, base_name)
        tables.append(table)
    return tables


def _fmt_mdd(mdd: float) -> str:
    return "n/a" if math.isnan(mdd) else "∞" if math.isinf(mdd) else fmt(mdd)


def _paired_caption(e: SettingEvidence, base_name: str) -> str:
    if e.baseline is None:
        why = e.note or (f"No finished {base_name} trial in this setting: nothing to pair with (choose another "
                         f"baseline with mixbench report --baseline NAME)")
        return f"{why}. Top-1: mean ± sample std over seeds, 95 % t-interval."
    compared = [c.comparison for c in e.methods if c.comparison is not None and c.comparison.paired.n >= 2]
    counts = sorted({c.paired.n for c in compared})
    allows = "; ".join(seed_count_note(n, len(compared)) for n in counts) or (
        "Fewer than 2 paired seeds: no interval and no test, single runs as in most papers' tables")
    used = sorted({c.paired.interval.method for c in compared if c.paired.interval is not None}) or ["none"]
    k = len(compared)
    holm = f"adjusted over the {k} methods of this table" if k != 1 else "the same as p with one method"
    return (f"Top-1: median of the last N epochs, mean ± sample std over finished seeds, with the mean's 95 % "
            f"t-interval (n/a with one seed). Paired: the seeds both the method and {base_name} finished; Δ: the "
            f"mean of the per-seed differences (points), with its 95 % interval (Student t below "
            f"{stats.BCA_MIN_SEEDS} pairs, BCa bootstrap from {stats.BCA_MIN_SEEDS} on; here: "
            f"{' and '.join(used)}); p: exact sign-flip permutation test, two-sided; p (Holm): {holm}; verdict "
            f"at α = {stats.ALPHA:g} (bold: better or worse). {allows}. Detectable Δ: the difference a paired "
            f"t-test would find with {stats.POWER * 100:.0f} % power given the spread of the differences (∞: the "
            f"seed count cannot reach p < {stats.ALPHA:g}).")


# ---- across settings -------------------------------------------------------------------------------------


def _setting_means(evidence: Sequence[SettingEvidence]) -> dict[Setting, dict[str, float]]:
    means = {}
    for e in evidence:
        cells = ([e.baseline] if e.baseline else []) + e.methods
        means[e.setting] = {c.label: mean_and_std(c.finite)[0] for c in cells}
    return means


def aggregate_table(evidence: Sequence[SettingEvidence], baseline: str = DEFAULT_BASELINE) -> Table | None:
    """With two or more settings holding the baseline: per method, IQM of normalised scores and probability
    of improvement over the baseline (stratified-bootstrap 95 % intervals), and the average rank."""
    with_base = [e for e in evidence if e.baseline is not None]
    if len(with_base) < 2:
        return None
    base_name = with_base[0].baseline.label
    labels: dict[str, str] = {}
    for e in with_base:
        for c in [e.baseline, *e.methods]:
            labels.setdefault(c.label, c.method_name)
    ranks = stats.average_ranks(_setting_means(with_base))
    table = Table(
        title=f"Across settings, against {base_name}",
        columns=["Method", "Settings", "IQM of normalised score", "95 % CI (IQM)", f"P(better than {base_name})",
                 "95 % CI (P)", "Average rank"],
        rows=[],
        align="lrrrrrr",
        caption=(f"Over the {len(with_base)} settings (dataset × epochs × backbone) that have {base_name}. "
                 f"Normalised score of a run: the fraction of {base_name}'s error it removes, (top-1 − b) / "
                 f"(100 − b), b being {base_name}'s mean top-1 in that setting (0: as good, negative: worse); "
                 f"IQM: the mean of the middle 50 % of all runs' scores. P(better): the probability that a run "
                 f"of the method beats a run of {base_name} in the same setting (ties count half), averaged "
                 f"over settings. Intervals: 95 % percentile, stratified bootstrap (seeds resampled within each "
                 f"setting, {stats.AGGREGATE_RESAMPLES} resamples). Average rank: by mean top-1 within each "
                 f"setting (1 = best), over the settings the method ran in. rliable's protocol (Agarwal et al., "
                 f"2021) on scipy."),
        label="aggregate",
    )
    for label in sorted(labels, key=lambda label: (label != base_name, method_rank(labels[label], label))):
        method, base = [], []
        for e in with_base:
            cell = next((c for c in [e.baseline, *e.methods] if c.label == label), None)
            method.append(cell.finite if cell else [])
            base.append(e.baseline.finite)
        a = stats.aggregate(method, base)
        table.rows.append([
            label + (" (baseline)" if label == base_name else ""), str(a.settings), fmt_signed(a.iqm, 3),
            fmt_interval(a.iqm_interval, signed=True, digits=3), fmt(a.improvement, 2),
            fmt_interval(a.improvement_interval), fmt(ranks.get(label, math.nan), 2),
        ])
    return table


# ---- frames for summary.csv and the plots --------------------------------------------------------------------


PAIRED_COLUMNS = ["baseline", "paired_seeds", "diff_mean", "diff_std", "diff_ci_low", "diff_ci_high",
                  "diff_interval", "p_value", "p_holm", "verdict", "min_p", "min_detectable_diff", "unpaired"]


def paired_frame(evidence: Sequence[SettingEvidence]) -> pd.DataFrame:
    """One row per compared method and setting: dataset, epochs, backbone, method, then PAIRED_COLUMNS."""
    rows = []
    for e in evidence:
        for cell in e.methods:
            c = cell.comparison
            if c is None or e.baseline is None:
                continue
            p = c.paired
            dataset, epochs, backbone = e.setting
            rows.append({
                "dataset": dataset, "epochs": epochs, "backbone": backbone, "method": cell.label,
                "method_name": cell.method_name, "baseline": e.baseline.label, "paired_seeds": p.n,
                "diff_mean": p.mean, "diff_std": p.std,
                "diff_ci_low": p.interval.low if p.interval else math.nan,
                "diff_ci_high": p.interval.high if p.interval else math.nan,
                "diff_interval": p.interval.method if p.interval else "",
                "p_value": p.p_value, "p_holm": c.p_holm, "verdict": c.verdict, "min_p": p.min_p,
                "min_detectable_diff": p.mdd, "unpaired": p.unpaired_note(cell.label, e.baseline.label),
            })
    return pd.DataFrame(rows, columns=["dataset", "epochs", "backbone", "method", "method_name", *PAIRED_COLUMNS])


def with_paired_columns(summary: pd.DataFrame, paired: pd.DataFrame) -> pd.DataFrame:
    """summary.csv's rows with the paired comparison of each (empty for the baseline and unpaired cells)."""
    if summary.empty:
        return summary
    keys = ["dataset", "epochs", "backbone", "method"]
    return summary.merge(paired.drop(columns="method_name"), on=keys, how="left", validate="one_to_one")


def rank_frame(evidence: Sequence[SettingEvidence]) -> pd.DataFrame:
    """One row per setting and method: the method's rank by mean top-1 in that setting (1 = best)."""
    rows = []
    for e in evidence:
        names = {c.label: c.method_name for c in ([e.baseline] if e.baseline else []) + e.methods}
        ranks = stats.average_ranks({e.setting: _setting_means([e])[e.setting]})
        dataset, epochs, backbone = e.setting
        rows += [{"dataset": dataset, "epochs": epochs, "backbone": backbone, "method": label,
                  "method_name": names[label], "rank": rank} for label, rank in ranks.items()]
    return pd.DataFrame(rows, columns=["dataset", "epochs", "backbone", "method", "method_name", "rank"])
