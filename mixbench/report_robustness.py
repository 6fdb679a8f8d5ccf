"""The report's calibration and robustness part: tables and plots from what `mixbench evaluate` stored.

Reads each finished trial's `record.json` (`evaluation`: per evaluated model) and, for the reliability diagrams,
its `robustness.json` (the per-bin counts). Every number is the trial's headline model's (the one its top-1
describes), mean ± std over the seeds that have it, per setting (dataset × epochs × backbone):

* Calibration: top-1, ECE (15 bins, and openmixup's 10), MCE, NLL, Brier, ECE after temperature scaling (the
  temperature is fitted on one seeded half of the val split and the ECE measured on the other).
* Robustness: clean top-1, mean top-1 over the corruptions and severities asked for, mCE and relative mCE with
  vanilla as the baseline model (Hendrycks & Dietterich's definitions with vanilla in AlexNet's place: for each
  corruption c, CE_c = E_c / E_c(vanilla) and relative CE_c = (E_c − E_clean) / (E_c(vanilla) −
  E_clean(vanilla)), E the top-1 error averaged over severities, then averaged over c and × 100; vanilla is
  100 by construction; computed from the seed means), top-1 under each occlusion fraction and under FGSM.
* Per corruption: top-1 averaged over severities, per method.
Plots: accuracy vs ECE (one point per method), reliability diagrams (one panel per method, bins pooled over seeds).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from mixbench.report import Table, fmt, fmt_mean_std, mean_and_std, method_rank
from mixbench.results import setting_order

if TYPE_CHECKING:
    from mixbench.report import TrialResult

CALIBRATION = (("top1", "Top-1 (%)", 1), ("ece", "ECE (%)", 100), ("ece_10", "ECE 10 bins (%)", 100),
               ("mce", "MCE (%)", 100), ("nll", "NLL", 1), ("brier", "Brier", 1), ("ece_ts", "ECE after TS (%)", 100),
               ("temperature", "T", 1))


def evaluated(trials: Sequence[TrialResult]) -> dict[tuple, dict[str, list[tuple[TrialResult, dict[str, Any]]]]]:
    """{(dataset, epochs, backbone): {method label: [(trial, headline summary)]}} for finished, evaluated trials;
    settings in order, methods in table order."""
    groups: dict[tuple, dict[str, list]] = {}
    names: dict[str, str] = {}
    for t in trials:
        r = t.record
        summary = r.evaluation.get(r.headline) if r.status == "done" else None
        if summary:
            groups.setdefault((r.dataset, r.epochs, r.backbone), {}).setdefault(r.method_label, []).append((t, summary))
            names[r.method_label] = r.method
    return {key: dict(sorted(methods.items(), key=lambda kv: method_rank(names[kv[0]], kv[0])))
            for key, methods in sorted(groups.items(), key=lambda item: setting_order(item[0]))}


def _values(rows: list[tuple[TrialResult, dict]], get) -> list[float]:
    values = []
    for _, summary in rows:
        try:
            values.append(get(summary))
        except (KeyError, TypeError):
            continue
    return [v for v in values if v is not None]


def _stat(rows: list[tuple[TrialResult, dict]], get) -> tuple[float, float]:
    return mean_and_std(_values(rows, get))


def _cell(rows: list[tuple[TrialResult, dict]], get, digits: int = 2) -> str:
    """mean ± std over seeds, then the 95 % Student-t interval of the mean (mixbench.stats; none with one seed)."""
    from mixbench.evidence import fmt_interval
    from mixbench.stats import mean_interval

    values = _values(rows, get)
    text = fmt_mean_std(*mean_and_std(values), digits)
    interval = mean_interval(values)
    return text if interval is None else f"{text} {fmt_interval(interval, digits=digits)}"


def _title(key: tuple) -> str:
    dataset, epochs, backbone = key
    return f"{dataset}, {epochs} epochs, {backbone}"


def calibration_tables(groups: dict) -> list[Table]:
    tables = []
    for key, methods in groups.items():
        if not any("ece" in s for rows in methods.values() for _, s in rows):
            continue
        table = Table(title=f"Calibration: {_title(key)}", columns=["Method", "Seeds", *(c[1] for c in CALIBRATION)],
                      rows=[], align="ll" + "r" * len(CALIBRATION),
                      caption="Headline model, mean ± std over seeds [95 % Student-t interval of the mean]; ECE "
                              "is top-label with equal-width bins; TS: temperature scaling fitted on half of the "
                              "val split, ECE on the other half.")
        for label, rows in methods.items():
            cells = [label, str(len(rows))]
            for field, _, scale in CALIBRATION:
                cells.append(_cell(rows, lambda s, f=field, k=scale: s[f] * k, 3 if field in ("nll", "brier") else 2))
            table.rows.append(cells)
        tables.append(table)
    return tables


def corruption_errors(rows: list[tuple[TrialResult, dict]]) -> tuple[float, dict[str, float]]:
    """Seed-mean clean error and per-corruption error (averaged over severities), in %."""
    clean = 100 - _stat(rows, lambda s: s["top1"])[0]
    names = {n for _, s in rows for n in s.get("corruption_top1_by_name", {})}
    return clean, {n: 100 - _stat(rows, lambda s, n=n: s["corruption_top1_by_name"][n])[0] for n in sorted(names)}


def mce(rows: list, baseline: list) -> tuple[float, float]:
    """(mCE, relative mCE) of a method against the baseline's rows (see the module docstring); nan without."""
    clean, errors = corruption_errors(rows)
    base_clean, base = corruption_errors(baseline)
    shared = [n for n in errors if n in base and base[n] > 0]
    if not shared:
        return math.nan, math.nan
    ce = [errors[n] / base[n] for n in shared]
    rel = [(errors[n] - clean) / (base[n] - base_clean) for n in shared if base[n] != base_clean]
    return 100 * float(np.mean(ce)), (100 * float(np.mean(rel)) if rel else math.nan)


# The datasets whose parameters each corruption protocol uses (mixbench.evaluation.corruptions); summaries
# written before there was more than one protocol carry none: CIFAR-C's.
PROTOCOL_NAMES = {"cifar": "CIFAR-10-C", "tiny_imagenet": "Tiny-ImageNet-C", "imagenet": "ImageNet-C"}


def robustness_tables(groups: dict) -> list[Table]:
    tables = []
    for key, methods in groups.items():
        summaries = [s for rows in methods.values() for _, s in rows]
        fractions = sorted({f for s in summaries for f in s.get("occlusion_top1", {})}, key=float)
        has_corruptions = any("corruption_top1" in s for s in summaries)
        has_fgsm = any("fgsm_top1" in s for s in summaries)
        if not (fractions or has_corruptions or has_fgsm):
            continue
        baseline = next((rows for label, rows in methods.items() if rows[0][0].record.method == "vanilla"), None)
        columns = ["Method", "Seeds", "Clean top-1 (%)"]
        if has_corruptions:
            columns += ["Corruption top-1 (%)", "mCE", "Relative mCE"]
        columns += [f"Occluded {float(f):.0%} top-1 (%)" for f in fractions]
        if has_fgsm:
            eps = next(s["fgsm_epsilon"] for s in summaries if "fgsm_epsilon" in s)
            columns.append(f"FGSM {eps * 255:.3g}/255 top-1 (%)")
        caption = "Headline model, mean ± std over seeds [95 % Student-t interval of the mean]."
        if has_corruptions:
            protocols = sorted({PROTOCOL_NAMES[s.get("corruption_protocol", "cifar")] for s in summaries
                                if "corruption_top1" in s})
            caption += (f" Corruptions: Hendrycks' definitions at {' and '.join(protocols)}'s parameters, top-1 "
                        "averaged over corruptions and severities; mCE and "
                        "relative mCE with vanilla as the baseline (vanilla = 100; lower is better)"
                        + ("" if baseline else ", not computed: no vanilla trial in this setting") + ".")
        table = Table(title=f"Robustness: {_title(key)}", columns=columns, rows=[],
                      align="ll" + "r" * (len(columns) - 2), caption=caption)
        for label, rows in methods.items():
            cells = [label, str(len(rows)), _cell(rows, lambda s: s["top1"])]
            if has_corruptions:
                cells.append(_cell(rows, lambda s: s["corruption_top1"]))
                m, rel = mce(rows, baseline) if baseline else (math.nan, math.nan)
                cells += [fmt(m, 1), fmt(rel, 1)]
            cells += [_cell(rows, lambda s, f=f: s["occlusion_top1"][f]) for f in fractions]
            if has_fgsm:
                cells.append(_cell(rows, lambda s: s["fgsm_top1"]))
            table.rows.append(cells)
        tables.append(table)
    return tables


def per_corruption_tables(groups: dict) -> list[Table]:
    tables = []
    for key, methods in groups.items():
        names = list(dict.fromkeys(n for rows in methods.values() for _, s in rows
                                   for n in s.get("corruption_top1_by_name", {})))
        if not names:
            continue
        table = Table(title=f"Top-1 per corruption: {_title(key)}", columns=["Method", *names], rows=[],
                      align="l" + "r" * len(names),
                      caption="Headline model, top-1 (%) averaged over severities, mean over seeds.")
        for label, rows in methods.items():
            table.rows.append([label, *(fmt(_stat(rows, lambda s, n=n: s["corruption_top1_by_name"][n])[0], 1)
                                        for n in names)])
        tables.append(table)
    return tables


def tables(trials: Sequence[TrialResult]) -> dict[str, list[Table]]:
    groups = evaluated(trials)
    return {"calibration": calibration_tables(groups), "robustness": robustness_tables(groups),
            "per_corruption": per_corruption_tables(groups)}


# ---- plots ---------------------------------------------------------------------------------------------------


def accuracy_vs_ece(trials: Sequence[TrialResult]) -> Figure | None:
    from mixbench.plots import _colours, _grid

    groups = {k: v for k, v in evaluated(trials).items() if any("ece" in s for r in v.values() for _, s in r)}
    if not groups:
        return None
    colours = _colours(list(dict.fromkeys(label for methods in groups.values() for label in methods)))
    fig, axes = _grid(len(groups))
    for ax, (key, methods) in zip(axes, groups.items(), strict=True):
        for label, rows in methods.items():
            ece, ece_std = _stat(rows, lambda s: s["ece"] * 100)
            top1, top1_std = _stat(rows, lambda s: s["top1"])
            ax.errorbar([ece], [top1], xerr=[0 if math.isnan(ece_std) else ece_std],
                        yerr=[0 if math.isnan(top1_std) else top1_std], fmt="o", capsize=3, color=colours[label],
                        label=label)
        ax.set_xlabel("ECE, 15 bins (%), lower is better")
        ax.set_ylabel("top-1 (%), last epoch")
        ax.set_title(_title(key))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Accuracy vs calibration (headline model, mean ± std over seeds)")
    return fig


def pooled_bins(rows: list[tuple[TrialResult, dict]]) -> dict[str, np.ndarray] | None:
    """The reliability bins of a method's trials added up over seeds (counts, confidence and accuracy sums)."""
    total = None
    for t, _ in rows:
        path = t.path / "robustness.json"
        if not path.is_file():
            continue
        parts = json.loads(path.read_text())["parts"].get(t.record.headline, {})
        clean = next((v for k, v in parts.items() if k.startswith("clean/")), None)
        if not clean or "reliability" not in clean:
            continue
        bins = clean["reliability"]
        count = np.array(bins["count"], dtype=float)
        conf = np.array([c or 0 for c in bins["confidence"]]) * count
        acc = np.array([a or 0 for a in bins["accuracy"]]) * count
        if total is None:
            total = {"edges": np.array(bins["edges"]), "count": count, "conf": conf, "acc": acc}
        else:
            total["count"] += count
            total["conf"] += conf
            total["acc"] += acc
    return total


def reliability_diagrams(trials: Sequence[TrialResult]) -> dict[str, Figure]:
    """One figure per setting, one panel per method: accuracy per confidence bin against the diagonal."""
    from mixbench.plots import _colours, _grid

    figures = {}
    for key, methods in evaluated(trials).items():
        pooled = {label: bins for label, rows in methods.items() if (bins := pooled_bins(rows)) is not None}
        if not pooled:
            continue
        colours = _colours(list(pooled))
        fig, axes = _grid(len(pooled), width=3.6, height=3.4)
        for ax, (label, bins) in zip(axes, pooled.items(), strict=True):
            edges, count = bins["edges"], bins["count"]
            shown = count > 0
            acc = np.divide(bins["acc"], count, out=np.zeros_like(count), where=shown)
            conf = np.divide(bins["conf"], count, out=np.zeros_like(count), where=shown)
            widths = np.diff(edges)
            ax.bar(edges[:-1][shown], acc[shown], width=widths[shown], align="edge", color=colours[label],
                   edgecolor="black", linewidth=0.5, label="accuracy")
            ax.bar(edges[:-1][shown], (conf - acc)[shown], bottom=acc[shown], width=widths[shown], align="edge",
                   color="none", edgecolor="tab:red", hatch="//", linewidth=0.5, label="gap to confidence")
            ax.plot([0, 1], [0, 1], "k--", linewidth=1)
            ece = float(np.sum(count / count.sum() * np.abs(acc - conf)))
            ax.set_title(f"{label} (ECE {ece * 100:.1f} %, n={int(count.sum())})", fontsize="medium")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("confidence")
            ax.set_ylabel("accuracy")
            ax.legend(fontsize="x-small", loc="upper left")
        fig.suptitle(f"Reliability diagrams, {_title(key)} (15 bins, seeds pooled)")
        dataset, epochs, backbone = key
        figures[f"reliability_{dataset}_{epochs}ep_{backbone}"] = fig
    return figures


def figures(trials: Sequence[TrialResult]) -> dict[str, Figure | None]:
    return {"accuracy_vs_ece": accuracy_vs_ece(trials), **reliability_diagrams(trials)}


def readme_lines(made: dict[str, list[Table]], plots_made: set[str]) -> list[str]:
    """The README's calibration and robustness sections (nothing when no trial was evaluated)."""
    from mixbench.report import markdown

    lines: list[str] = []
    for title, key, plots in (("Calibration", "calibration", ["accuracy_vs_ece"]),
                              ("Robustness", "robustness", []), ("Top-1 per corruption", "per_corruption", [])):
        shown = [t for t in made.get(key, []) if t.rows]
        if not shown:
            continue
        lines += [f"## {title}", ""]
        for table in shown:
            lines += [f"### {table.title}", "", table.caption, "", markdown(table)]
        lines += [f"![{p}](plots/{p}.png)\n" for p in plots if p in plots_made]
        if key == "calibration":
            lines += [f"![{p}](plots/{p}.png)\n" for p in sorted(plots_made) if p.startswith("reliability_")]
    if lines:
        lines += ["Measured by `mixbench evaluate` (calibration, corruptions, occlusion, FGSM; see "
                  "mixbench/evaluate.py); each trial's `robustness.json` holds every value.", ""]
    return lines
