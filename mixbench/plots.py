"""The report's plots, each readable without its table (titles, units, legends say what is shown).

Every function takes the tidy frames `mixbench.report` builds, returns a matplotlib `Figure` (or None when
there is nothing to draw) and never touches pyplot's global state: figures are made with `Figure()` and
rendered by Agg, so reports can be written from any thread or headless machine. `save_figure` writes a PNG
and a PDF of each.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from mixbench.figures import legend_beside, place_point_labels, save, wrap_title
from mixbench.results import groups_in_order

STATUS_STYLE = {  # claims status -> (colour, marker)
    "reproduced": ("tab:green", "o"),
    "below": ("tab:red", "v"),
    "above": ("tab:blue", "^"),
    "partial": ("tab:gray", "s"),
}


def _window(block: pd.DataFrame) -> str:
    """The 'last N' actually used: a trial's median covers min(last_n, epochs) epochs (a 2-epoch run with
    last_n 10 is the median of 2), so N is said as it was, one value per distinct window."""
    windows = sorted({int(min(n, e)) for n, e in zip(block["last_n"], block["epochs"], strict=True)
                      if pd.notna(n) and pd.notna(e)})
    return "/".join(map(str, windows)) or "N"


def _colours(labels: list[str]) -> dict[str, str | tuple]:
    """One colour per method label: the project's methods keep theirs across every plot (vanilla C0, mixup C1,
    ..., in display order, ten at most), other labels (plug-ins, a method at two settings) take the remaining
    ones in order."""
    from mixbench.methods.registry import methods_in_display_order

    named = methods_in_display_order()[:10]
    fixed = {label: f"C{named.index(label)}" for label in labels if label in named}
    spare = [f"C{i}" for i in range(len(named), 10)] + list(matplotlib.colormaps["tab20"].colors)
    others = [label for label in labels if label not in fixed]
    return {**fixed, **{label: spare[i % len(spare)] for i, label in enumerate(others)}}


def ordered_methods(frame: pd.DataFrame) -> list[str]:
    """The method labels of a frame (`method_name`, `method` columns) in display order."""
    from mixbench.methods.registry import ordered_labels

    return ordered_labels(zip(frame["method_name"], frame["method"], strict=True))


def _grid(n: int, width: float = 4.8, height: float = 3.6, legend: float = 2.2) -> tuple[Figure, list]:
    """`n` panels, 3 to a row; each panel `legend` inches wider, for the legend beside it."""
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=((width + legend) * cols, height * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def gain_over_vanilla(summary: pd.DataFrame) -> Figure | None:
    """Bars: each method's median top-1 minus vanilla's, per backbone; one panel per dataset and budget."""
    if summary.empty:
        return None
    data = summary[summary["top1_median_last_n_mean"].notna()]
    panels = []
    for (dataset, epochs), block in groups_in_order(data, ["dataset", "epochs"]):
        if (block["method_name"] == "vanilla").any() and (block["method_name"] != "vanilla").any():
            panels.append((dataset, epochs, block))
    if not panels:
        return None
    every = ordered_methods(data)
    colours = _colours(every)
    labels = [m for m in every if m not in set(data.loc[data["method_name"] == "vanilla", "method"])]
    fig, axes = _grid(len(panels))
    for ax, (dataset, epochs, block) in zip(axes, panels, strict=True):
        backbones = sorted(set(block["backbone"]))
        width = 0.8 / max(len(labels), 1)
        for k, label in enumerate(labels):
            gains, errors = [], []
            for backbone in backbones:
                rows = block[block["backbone"] == backbone]
                base = rows[rows["method_name"] == "vanilla"]
                mine = rows[rows["method"] == label]
                if base.empty or mine.empty:
                    gains.append(np.nan)
                    errors.append(0.0)
                    continue
                gains.append(mine["top1_median_last_n_mean"].iloc[0] - base["top1_median_last_n_mean"].iloc[0])
                # The two means' errors add in quadrature; a single seed contributes none.
                stds = np.nan_to_num([mine["top1_median_last_n_std"].iloc[0], base["top1_median_last_n_std"].iloc[0]])
                errors.append(float(np.hypot(*stds)))
            if all(np.isnan(gains)):
                continue
            x = np.arange(len(backbones)) + (k - (len(labels) - 1) / 2) * width
            ax.bar(x, gains, width, yerr=errors, capsize=3, label=label, color=colours[label])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(backbones)), backbones, rotation=15)
        ax.set_ylabel("top-1 gain over vanilla (points)")
        ax.set_title(f"{dataset}, {epochs} epochs (median of last {_window(block)})")
        legend_beside(ax)
    fig.suptitle(wrap_title("Gain over vanilla: median top-1 of the last N epochs, mean over seeds (error: ±1 std)",
                            fig.get_figwidth()))
    return fig


def top1_vs_epoch(curves: pd.DataFrame) -> Figure | None:
    """Lines: top-1 per epoch, mean over seeds, with the min–max band; one panel per dataset, backbone, budget.
    A setting validated at one epoch only (`recipe.eval_every`) has no curve: no panel, named in the title."""
    if curves.empty:
        return None
    groups, once = [], []
    for key, block in groups_in_order(curves, ["dataset", "backbone", "epochs"]):
        (groups if block["epoch"].nunique() >= 2 else once).append((key, block))
    if not groups:
        return None
    labels = ordered_methods(pd.concat([block for _, block in groups]))
    colours = _colours(labels)
    fig, axes = _grid(len(groups))
    for ax, ((dataset, backbone, epochs), block) in zip(axes, groups, strict=True):
        for label in labels:
            mine = block[block["method"] == label]
            if mine.empty:
                continue
            per_epoch = mine.groupby("epoch")["top1"].agg(["mean", "min", "max", "count"])
            seeds = mine["seed"].nunique()
            unfinished = mine.loc[mine["status"] != "done", "seed"].nunique()
            note = f"{seeds} seed{'s' * (seeds != 1)}" + (f", {unfinished} unfinished" if unfinished else "")
            ax.plot(per_epoch.index, per_epoch["mean"], label=f"{label} ({note})", color=colours[label])
            ax.fill_between(per_epoch.index, per_epoch["min"], per_epoch["max"], color=colours[label], alpha=0.15)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"{dataset}, {backbone}, {epochs} epochs")
        ax.grid(alpha=0.3)
        legend_beside(ax)
    title = "Top-1 vs epoch: mean over seeds (line), min–max over seeds (band)"
    if once:
        title += "; validated at one epoch only, so left out: " + ", ".join(
            f"{dataset} {backbone} {epochs} epochs" for (dataset, backbone, epochs), _ in once)
    fig.suptitle(wrap_title(title, fig.get_figwidth()))
    return fig


def measured_vs_claimed(claims: pd.DataFrame) -> Figure | None:
    """One row per compared claim: the published number (black cross) and the measured mean over seeds with the
    band the claim must fall in to count as reproduced, its 95 % interval (at least ±0.3 points with 1–2 seeds),
    coloured by status. Claims that no finished trial measured are left out (the table lists them)."""
    if claims.empty:
        return None
    shown = claims[claims["measured"].notna()].iloc[::-1]  # first table row at the top
    if shown.empty:
        return None
    fig = Figure(figsize=(10.0, 1.6 + 0.28 * len(shown)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(shown))
    ax.scatter(shown["claimed"], y, marker="x", color="black", zorder=3, label="claimed")
    for status, (colour, marker) in STATUS_STYLE.items():
        rows = shown["status"].to_numpy() == status
        if rows.any():
            ax.errorbar(shown["measured"][rows], y[rows], xerr=shown["tolerance"][rows], fmt=marker,
                        color=colour, capsize=3, label=f"measured: {status} ({rows.sum()})")
    def epochs(value: float) -> str:
        return "?" if pd.isna(value) else str(int(value))

    names = [f"{r.dataset}, {r.method_label}, {r.mixbench_backbone}, {epochs(r.epochs)} ep"
             + (f" (ran {epochs(r.epochs_compared)})" if r.status == "partial" else "") + f", {r.metric.split('_')[0]}"
             for r in shown.itertuples(index=False)]
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlabel("accuracy (%), each claim's own statistic\nmeasured: mean over seeds, bar: 95 % interval "
                  "(≥ ±0.3 with 1–2 seeds)")
    ax.set_title("Published claims vs measured")
    ax.grid(axis="x", alpha=0.3)
    legend_beside(ax)
    return fig


def accuracy_vs_cost(summary: pd.DataFrame) -> Figure | None:
    """Points: median top-1 against training time per trial; one series per method through its budgets."""
    if summary.empty:
        return None
    data = summary[summary["top1_median_last_n_mean"].notna() & summary["time_total_s"].notna()]
    if data.empty:
        return None
    labels = ordered_methods(data)
    colours = _colours(labels)
    groups = groups_in_order(data, ["dataset", "backbone"])
    fig, axes = _grid(len(groups))
    labelled = []
    for ax, ((dataset, backbone), block) in zip(axes, groups, strict=True):
        points, names = [], []
        for label in labels:
            mine = block[block["method"] == label].sort_values("epochs")
            if mine.empty:
                continue
            minutes = mine["time_total_s"] / 60
            ax.errorbar(minutes, mine["top1_median_last_n_mean"], yerr=mine["top1_median_last_n_std"].fillna(0),
                        fmt="o-", color=colours[label], capsize=3, label=label)
            points += list(zip(minutes, mine["top1_median_last_n_mean"], strict=True))
            names += [f"{epochs} ep" for epochs in mine["epochs"]]
        if block["time_total_s"].max() > 10 * block["time_total_s"].min():
            ax.set_xscale("log")  # ticks at 1, 2, 5 × 10^k written as numbers: the default's 2×10⁻¹… overlap
            ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training time per trial (min, mean over seeds)")
        ax.set_ylabel(f"median top-1 of last {_window(block)} epochs (%)\nmean ± std over seeds")
        ax.set_title(f"{dataset}, {backbone}")
        ax.grid(alpha=0.3)
        legend_beside(ax)
        labelled.append((ax, points, names))
    fig.suptitle(wrap_title("Accuracy vs cost, one point per epochs budget", fig.get_figwidth()))
    for ax, points, names in labelled:  # once every panel is drawn, so the layout is final
        place_point_labels(ax, points, names)
    return fig


VERDICT_STYLE = {  # paired verdict -> (colour, filled marker?, legend text)
    "better": ("tab:green", True, "better (Holm p < 0.05)"),
    "worse": ("tab:red", True, "worse (Holm p < 0.05)"),
    "no detectable difference": ("tab:gray", False, "no detectable difference"),
    "n/a": ("tab:gray", False, "n/a (fewer than 2 paired seeds)"),
}


def paired_differences(paired: pd.DataFrame) -> Figure | None:
    """Forest plot: per setting, one row per method, its mean paired difference from the baseline with the 95 %
    interval, the zero line drawn; significant differences (after Holm) filled and coloured."""
    from mixbench.methods.registry import method_rank

    if paired.empty:
        return None
    groups = groups_in_order(paired, ["dataset", "epochs", "backbone"])
    tallest = max(len(block) for _, block in groups)
    fig, axes = _grid(len(groups), width=6.0, height=1.2 + 0.42 * tallest, legend=0.0)  # one legend, below
    shown: set[str] = set()
    for ax, ((dataset, epochs, backbone), block) in zip(axes, groups, strict=True):
        rows = sorted(block.itertuples(index=False), key=lambda r: method_rank(r.method_name, r.method),
                      reverse=True)  # first method at the top
        for y, row in enumerate(rows):
            colour, filled, text = VERDICT_STYLE[row.verdict]
            if np.isfinite(row.diff_ci_low):
                ax.plot([row.diff_ci_low, row.diff_ci_high], [y, y], color=colour, linewidth=2)
            ax.plot([row.diff_mean], [y], "o", markersize=7, color=colour,
                    markerfacecolor=colour if filled else "white", label=text if text not in shown else None)
            shown.add(text)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [f"{r.method} (n={r.paired_seeds})" for r in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel(f"top-1 − {rows[0].baseline} (points): mean over paired seeds, 95 % CI")
        ax.set_title(f"{dataset}, {epochs} epochs, {backbone}")
        ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=len(shown), fontsize="small")
    fig.suptitle(wrap_title("Paired differences from the baseline, median top-1 of the last N epochs",
                            fig.get_figwidth(), 10), fontsize="medium")
    return fig


def gain_by_size(paired: pd.DataFrame, sizes: pd.DataFrame) -> Figure | None:
    """Each method's paired gain over the baseline (mean, 95 % CI) against the training-set size, one panel per
    budget: for results that ran one dataset at two or more sizes (`limit_per_class`), e.g. a data-size study.

    `sizes`: dataset (label), dataset_name, per_class. The budget is the number of training images seen per
    class (epochs × per_class) where every such budget was run at two sizes or more (a compute-matched grid),
    else the number of epochs. Filled markers: different from the baseline after Holm (p < 0.05)."""
    from mixbench.methods.registry import method_rank

    if paired.empty or sizes.empty:
        return None
    frame = paired.merge(sizes, on="dataset").dropna(subset=["per_class"])
    frame["seen"] = frame["epochs"] * frame["per_class"]
    panels = []
    for (name, backbone), block in groups_in_order(frame, ["dataset_name", "backbone"]):
        if block["per_class"].nunique() < 2:
            continue
        by_seen = block.groupby("seen")["per_class"].nunique()
        budget = "seen" if (by_seen >= 2).all() else "epochs"
        panels += [(name, backbone, budget, value, part) for value, part in block.groupby(budget, sort=True)]
    if not panels:
        return None
    labels = ordered_methods(frame)
    colours = _colours(labels)
    fig, axes = _grid(len(panels), width=4.6, height=3.8, legend=0.0)
    share = axes[0]
    for ax, (name, backbone, budget, value, part) in zip(axes, panels, strict=True):
        if ax is not share:
            ax.sharey(share)
        order = sorted(part["method"].unique(), key=lambda m: method_rank(part.loc[part["method"] == m,
                                                                                  "method_name"].iloc[0], m))
        for i, label in enumerate(order):
            mine = part[part["method"] == label].sort_values("per_class")
            dodge = 1 + 0.04 * (i - (len(order) - 1) / 2)  # side by side on the log axis
            x = mine["per_class"].to_numpy() * dodge
            ax.plot(x, mine["diff_mean"], color=colours[label], linewidth=1, alpha=0.7, gid=f"gain {label}")
            low = (mine["diff_mean"] - mine["diff_ci_low"]).to_numpy()
            high = (mine["diff_ci_high"] - mine["diff_mean"]).to_numpy()
            ax.errorbar(x, mine["diff_mean"], yerr=np.nan_to_num([low, high]), fmt="none", ecolor=colours[label],
                        elinewidth=1.2, capsize=2)
            significant = mine["verdict"].isin(["better", "worse"]).to_numpy()
            for xi, yi, filled in zip(x, mine["diff_mean"], significant, strict=True):
                ax.plot([xi], [yi], "o", markersize=6, color=colours[label],
                        markerfacecolor=colours[label] if filled else "white")
            ax.plot([], [], "o-", color=colours[label], label=label)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ticks = sorted(part["per_class"].unique())
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("training images per class")
        ax.set_ylabel(f"top-1 − {part['baseline'].iloc[0]} (points)")
        what = (f"{value:g} images seen per class" if budget == "seen" else f"{value} epochs")
        ax.set_title(wrap_title(f"{name}, {backbone}: {what}", 4.4, 9),
                     fontsize="medium")
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 6), fontsize="small")
    fig.suptitle(wrap_title("Gain over the baseline by training-set size: mean paired difference, 95 % CI "
                            "(filled: Holm p < 0.05)", fig.get_figwidth(), 10), fontsize="medium")
    return fig


def average_rank(ranks: pd.DataFrame) -> Figure | None:
    """Each method's rank (1 = best mean top-1) in every setting (dots) and its average (bar); drawn from three
    settings (dataset × epochs × backbone) on, where an average rank starts to mean something."""
    if ranks.empty:
        return None
    settings = ranks[["dataset", "epochs", "backbone"]].drop_duplicates()
    if len(settings) < 3:
        return None
    labels = ordered_methods(ranks)
    colours = _colours(labels)
    mean = ranks.groupby("method")["rank"].mean()
    order = sorted(labels, key=lambda label: mean[label], reverse=True)  # best at the top
    fig = Figure(figsize=(6.4, 1.4 + 0.4 * len(order)), layout="constrained")
    ax = fig.add_subplot()
    for y, label in enumerate(order):
        mine = ranks[ranks["method"] == label]["rank"].to_numpy()
        ax.barh(y, mean[label], color=colours[label], alpha=0.5)
        jitter = np.linspace(-0.2, 0.2, len(mine)) if len(mine) > 1 else np.zeros(1)
        ax.plot(mine, y + jitter, "o", color=colours[label], markersize=4)
        ax.annotate(f"{mean[label]:.2f} ({len(mine)} settings)", (mean[label], y), xytext=(4, -3),
                    textcoords="offset points", fontsize=7)
    ax.set_yticks(range(len(order)), order)
    ax.set_xlim(0, ranks["rank"].max() + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(wrap_title("rank by mean top-1 within a setting (1 = best); bar: average, dots: each setting",
                             fig.get_figwidth() - 2.0, 10))
    ax.set_title(wrap_title(f"Average rank over {len(settings)} settings (dataset × epochs × backbone)",
                            fig.get_figwidth() - 2.0))  # the method names take the left of the figure
    ax.grid(axis="x", alpha=0.3)
    return fig


def save_figure(fig: Figure, folder: Path, name: str) -> list[Path]:
    """`folder/name.png` and `folder/name.pdf`, without timestamps so a regenerated report diffs cleanly."""
    folder.mkdir(parents=True, exist_ok=True)
    png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
    save(fig, png, dpi=150)
    save(fig, pdf, metadata={"CreationDate": None})
    return [png, pdf]
