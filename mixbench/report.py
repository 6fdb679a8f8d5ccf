"""Tables from trial records: backbone × method rows, top-1 mean ± std over seeds (Markdown and CSV).

Reports read records only and never re-run anything. A trial that failed or has not finished is listed with
its status, never silently dropped.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd

from mixbench.results import TrialRecord, load_records


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def accuracy_table(records: list[TrialRecord]) -> pd.DataFrame:
    """One row per dataset × backbone × method: seeds done, top-1 (median of last N, best, last)."""
    rows = []
    keys = sorted({(r.dataset, r.backbone, r.method_label) for r in records})
    for dataset, backbone, method in keys:
        group = [r for r in records if (r.dataset, r.backbone, r.method_label) == (dataset, backbone, method)]
        done = [r for r in group if r.status == "done"]
        others = sorted({r.status for r in group if r.status != "done"})
        last_n = group[0].last_n
        rows.append({
            "dataset": dataset,
            "backbone": backbone,
            "method": method,
            "seeds": f"{len(done)}/{len(group)}",
            f"top1 (median last {last_n})": mean_std([r.top1_median_last_n for r in done]),
            "top1 (best)": mean_std([r.top1_best for r in done]),
            "top1 (last)": mean_std([r.top1 for r in done]),
            "epochs": done[0].epochs if done else group[0].epochs,
            "status": "done" if not others else ", ".join(
                f"{sum(r.status == s for r in group)} {s}" for s in others),
        })
    return pd.DataFrame(rows)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency such as tabulate)."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def write_minimal_report(results: Path, out: Path) -> pd.DataFrame:
    """`results.csv` (one row per trial) and `accuracy.md` / `accuracy.csv` (the grid) under `out`."""
    from mixbench.results import atomic_write_text, records_frame

    records = load_records(results)
    if not records:
        raise FileNotFoundError(f"no trials under {results}; run the suite first (mixbench run SUITE)")
    table = accuracy_table(records)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.csv", records_frame(records).to_csv(index=False))
    atomic_write_text(out / "accuracy.csv", table.to_csv(index=False))
    atomic_write_text(out / "accuracy.md", to_markdown(table))
    return table
