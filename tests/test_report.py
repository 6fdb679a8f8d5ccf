"""The report from small hand-made records: exact tables (Markdown, CSV, LaTeX), claims, plots, the CLI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from mixbench import plots
from mixbench.claims import COLUMNS, compare_all, load_claims
from mixbench.cli import main
from mixbench.report import (
    accuracy_tables,
    budgets_table,
    claims_frame,
    claims_table,
    cost_table,
    curves_frame,
    latex,
    load_results,
    markdown,
    ranking_tables,
    rerun_commands,
    results_frame,
    summarize_trials,
    write_minimal_report,
    write_report,
)
from mixbench.results import TrialRecord, summarize, write_config, write_metrics, write_record
from mixbench.suite import TrialConfig

START, END = "2025-01-01T00:00:00+00:00", "2025-01-01T00:30:00+00:00"


def write_trial(root: Path, method: str, seed: int, top1s: list[float], *, epochs: int = 4, status: str = "done",
                reason: str | None = None, cost: tuple[float, float, float] | None = (2.0, 500.0, 1000.0),
                hparams: dict | None = None, per_class: int | None = None) -> TrialConfig:
    """One trial folder with the real schema: config.yaml, and unless pending metrics.jsonl and record.json.
    `per_class`: the dataset keeps that many training images per class, labelled `synthetic_<per_class>`."""
    dataset = ({"name": "synthetic", "label": f"synthetic_{per_class}", "limit_per_class": per_class} if per_class
               else {"name": "synthetic"})
    config = TrialConfig(suite="demo", dataset=dataset, backbone={"name": "resnet_tiny_cifar"},
                         method=method, method_label=method, method_version=1, hparams=hparams or {}, seed=seed,
                         recipe={"epochs": epochs, "batch_size": 10, "last_n": 2})
    trial_dir = root / "demo" / config.dirname
    write_config(trial_dir, config.model_dump(mode="json"))
    if status == "pending":
        return config
    seconds, speed, memory = cost or (None, None, None)
    history = [{"epoch": i + 1, "top1": v, "top5": v + 10, "lr": 0.1, "train_loss": 1.0, "images_per_sec": speed,
                "epoch_seconds": seconds, "peak_memory_mb": memory} for i, v in enumerate(top1s)]
    write_metrics(trial_dir, history)
    top1, top5 = summarize(history, "top1", 2), summarize(history, "top5", 2)
    write_record(trial_dir, TrialRecord(
        trial_id=config.trial_id, suite="demo", dataset=config.dataset.key, backbone="resnet_tiny_cifar", method=method,
        method_label=method, method_version=1, hparams=hparams or {}, seed=seed, status=status, reason=reason,
        epochs=epochs, epochs_done=len(top1s), top1=top1["last"], top5=top5["last"], top1_best=top1["best"],
        top1_best_epoch=top1["best_epoch"], top1_median_last_n=top1["median_last_n"], top5_best=top5["best"],
        top5_median_last_n=top5["median_last_n"], last_n=2, images_per_sec=speed,
        time_total_s=(seconds or 0.0) * len(top1s), time_per_epoch_s=seconds, peak_memory_mb=memory,
        param_count=1234, started_at=START, updated_at=END, config=config.model_dump(mode="json"),
    ))
    return config


@pytest.fixture
def results(tmp_path) -> Path:
    """synthetic × resnet_tiny_cifar, vanilla and mixup at 4 epochs (last N = 2), 3 seeds: two finished each,
    a pending vanilla and a failed mixup."""
    root = tmp_path / "results"
    write_trial(root, "vanilla", 0, [50.0, 60.0, 70.0, 80.0])  # median last 2: 75; best 80
    write_trial(root, "vanilla", 1, [52.0, 62.0, 72.0, 78.0])  # 75; 78
    write_trial(root, "vanilla", 2, [], status="pending")
    mixup_cost = (2.5, 400.0, 1100.0)
    write_trial(root, "mixup", 0, [40.0, 60.0, 85.0, 81.0], cost=mixup_cost, hparams={"alpha": 1.0})  # 83; 85
    write_trial(root, "mixup", 1, [42.0, 62.0, 83.0, 85.0], cost=mixup_cost, hparams={"alpha": 1.0})  # 84; 85
    write_trial(root, "mixup", 2, [30.0], status="failed", reason="RuntimeError: boom", cost=None,
                hparams={"alpha": 1.0})
    return root


@pytest.fixture
def claims_file(tmp_path) -> Path:
    path = tmp_path / "claims.csv"
    setting = "ResNet-tiny,resnet_tiny_cifar"
    median = "stat=median top-1 of last 2 epochs"
    rows = [
        f"synthetic,{setting},vanilla,4,top1_acc,70.0,32,lab notebook,{median}",
        f"synthetic,{setting},mixup,4,top1_acc,60.0,32,lab notebook,{median}",
        f"synthetic,{setting},mixup,4,top1_acc,90.0,32,lab notebook,stat=best top-1",
        f"synthetic,{setting},mixup,8,top1_acc,90.0,32,lab notebook,{median}",
        f"synthetic,{setting},cutmix,4,top1_acc,80.0,32,lab notebook,{median}",
        f"CIFAR-10,{setting},vanilla,4,top1_acc,80.0,32,lab notebook,{median}",  # another dataset: left out
    ]
    path.write_text(",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return path


# ---- tables ----------------------------------------------------------------------------------------------


ACCURACY_MD = """\
| Backbone | Statistic | vanilla | mixup |
|---|---|---:|---:|
| resnet_tiny_cifar | median last 2 | 75.00 ± 0.00 (2/3) | **83.50 ± 0.71 (2/3)** |
| resnet_tiny_cifar | best | 79.00 ± 1.41 (2/3) | **85.00 ± 0.00 (2/3)** |
"""

ACCURACY_TEX = r"""\begin{table}[t]
\centering
\caption{Top-1 accuracy (\%), synthetic, 4 epochs. Mean $\pm$ sample std over seeds of each trial's median top-1 of its last N epochs (N values) and of its best epoch; bold: the best method of the row. (k/n): only k of n seeds finished; a cell with none finished shows the trials' status.}
\label{tab:acc-synthetic-4}
\begin{tabular}{llrr}
\toprule
Backbone & Statistic & vanilla & mixup \\
\midrule
resnet\_tiny\_cifar & median last 2 & 75.00 $\pm$ 0.00 (2/3) & \textbf{83.50 $\pm$ 0.71 (2/3)} \\
resnet\_tiny\_cifar & best & 79.00 $\pm$ 1.41 (2/3) & \textbf{85.00 $\pm$ 0.00 (2/3)} \\
\bottomrule
\end{tabular}
\end{table}
"""  # noqa: E501 (LaTeX as written, one line per row)


def test_accuracy_grid_markdown_and_latex(results):
    tables = accuracy_tables(summarize_trials(load_results(results)))
    assert [t.title for t in tables] == ["Top-1 accuracy (%), synthetic, 4 epochs"]
    assert markdown(tables[0]) == ACCURACY_MD
    assert latex(tables[0]) == ACCURACY_TEX


def test_a_cell_with_no_finished_seed_shows_the_status(tmp_path):
    root = tmp_path / "results"
    write_trial(root, "vanilla", 0, [50.0, 60.0, 70.0, 80.0])
    write_trial(root, "mixup", 0, [40.0, 50.0], status="running")
    write_trial(root, "mixup", 1, [], status="pending")
    table = accuracy_tables(summarize_trials(load_results(root)))[0]
    assert table.rows == [["resnet_tiny_cifar", "median last 2", "75.00", "1 pending, 1 running"],
                          ["resnet_tiny_cifar", "best", "80.00", "1 pending, 1 running"]]
    assert table.bold == set()  # one method with a value: no "best of the row"


RESULTS_CSV = """\
model,method,method_name,dataset,img_size,epochs,epochs_done,seed,status,top1,top5,top1_best,top1_best_epoch,\
top1_median_last_n,top5_best,top5_median_last_n,last_n,images_per_sec,time_per_epoch_s,time_total_s,peak_memory_mb,\
param_count,device,gpu_name,world_size,suite,trial_id,method_version,mixbench,torch,timm,cuda,git_hash,started_at,\
updated_at,reason,headline,threads,cpu_count,load_avg_start,load_avg_end,hostname,time_eval_s,variant,\
hparams.alpha
resnet_tiny_cifar,vanilla,vanilla,synthetic,32,4,4,0,done,80.0,90.0,80.0,4,75.0,90.0,85.0,2,500.0,2.0,8.0,1000.0,1234,cpu,,1,\
demo,{vanilla0},1,,,,,,{start},{end},,model,,,,,,,vanilla,
resnet_tiny_cifar,vanilla,vanilla,synthetic,32,4,4,1,done,78.0,88.0,78.0,4,75.0,88.0,85.0,2,500.0,2.0,8.0,1000.0,1234,cpu,,1,\
demo,{vanilla1},1,,,,,,{start},{end},,model,,,,,,,vanilla,
resnet_tiny_cifar,vanilla,vanilla,synthetic,32,4,0,2,pending,,,,,,,,2,,,0.0,,,cpu,,1,demo,{vanilla2},1,,,,,,,,,model,,,,,,,vanilla,
resnet_tiny_cifar,mixup,mixup,synthetic,32,4,4,0,done,81.0,91.0,85.0,3,83.0,95.0,93.0,2,400.0,2.5,10.0,1100.0,1234,cpu,,1,\
demo,{mixup0},1,,,,,,{start},{end},,model,,,,,,,mixup,1.0
resnet_tiny_cifar,mixup,mixup,synthetic,32,4,4,1,done,85.0,95.0,85.0,4,84.0,95.0,94.0,2,400.0,2.5,10.0,1100.0,1234,cpu,,1,\
demo,{mixup1},1,,,,,,{start},{end},,model,,,,,,,mixup,1.0
resnet_tiny_cifar,mixup,mixup,synthetic,32,4,1,2,failed,30.0,40.0,30.0,1,30.0,40.0,40.0,2,,,0.0,,1234,cpu,,1,demo,{mixup2},1,\
,,,,,{start},{end},RuntimeError: boom,model,,,,,,,mixup,1.0
"""


def test_results_csv_one_flat_row_per_trial(results, tmp_path):
    trials = load_results(results)
    ids = {f"{t.record.method}{t.record.seed}": t.record.trial_id for t in trials}
    assert len(trials) == 6  # the failed and the pending trial are there
    out = tmp_path / "report"
    write_report(results, out)
    assert (out / "results.csv").read_text() == RESULTS_CSV.format(start=START, end=END, **ids)
    frame = results_frame(trials)
    assert frame["status"].tolist() == ["done", "done", "pending", "done", "done", "failed"]
    # A declared field of the record reaches the table (it once came out empty in every row).
    assert frame["param_count"].tolist()[:2] == [1234, 1234] and pd.isna(frame["param_count"][2])


COST_MD = """\
| Dataset | Backbone | Method | Time/epoch (s) | × vanilla | Images/s | × vanilla | Peak memory (MB) | × vanilla |
|---|---|---|---:|---:|---:|---:|---:|---:|
| synthetic | resnet_tiny_cifar | vanilla | 2.00 | 1.00 | 500.0 | 1.00 | 1000 | 1.00 |
| synthetic | resnet_tiny_cifar | mixup | 2.50 | 1.25 | 400.0 | 0.80 | 1100 | 1.10 |
"""

COST_TEX = r"""\begin{table}[t]
\centering
\caption{Cost. Means over every trial that measured them, all budgets pooled. Time per epoch includes evaluation; images/s is training throughput; peak memory is CUDA max allocated on GPU and the process's max RSS on CPU. Ratios are to vanilla on the same dataset and backbone.}
\label{tab:cost}
\begin{tabular}{lllrrrrrr}
\toprule
Dataset & Backbone & Method & Time/epoch (s) & $\times$ vanilla & Images/s & $\times$ vanilla & Peak memory (MB) & $\times$ vanilla \\
\midrule
synthetic & resnet\_tiny\_cifar & vanilla & 2.00 & 1.00 & 500.0 & 1.00 & 1000 & 1.00 \\
synthetic & resnet\_tiny\_cifar & mixup & 2.50 & 1.25 & 400.0 & 0.80 & 1100 & 1.10 \\
\bottomrule
\end{tabular}
\end{table}
"""  # noqa: E501 (LaTeX as written, one line per row)


def test_cost_table_with_ratios_to_vanilla(results):
    table = cost_table(summarize_trials(load_results(results)))
    assert markdown(table) == COST_MD
    assert latex(table) == COST_TEX


def test_cost_ratio_without_vanilla_is_a_dash(tmp_path):
    root = tmp_path / "results"
    write_trial(root, "mixup", 0, [40.0, 60.0])
    assert cost_table(summarize_trials(load_results(root))).rows == [
        ["synthetic", "resnet_tiny_cifar", "mixup", "2.00", "–", "500.0", "–", "1000", "–"]]


CLAIMS_MD = """\
| Dataset | Model | Epochs | Metric | Claimed | Measured | Δ (95 % CI) | Status | Note | Source |
|---|---|---:|---|---:|---:|---:|---|---|---|
| synthetic | ResNet-tiny + Vanilla | 4 | top-1, median of last 2 ep | 70.00 | 71.00 ± 1.41 (2 seeds) \
| +1.00 [-11.71, +13.71] | reproduced | also 1 pending | lab notebook |
| synthetic | ResNet-tiny + Mixup | 4 | top-1, median of last 2 ep | 60.00 | 82.00 ± 1.41 (2 seeds) \
| +22.00 [+9.29, +34.71] | above | also 1 failed | lab notebook |
| synthetic | ResNet-tiny + Mixup | 4 | top-1, best epoch | 90.00 | 85.00 ± 0.00 (2 seeds) | -5.00 [-5.00, -5.00] \
| below | also 1 failed | lab notebook |
| synthetic | ResNet-tiny + Mixup | 8 | top-1, median of last 2 ep | 90.00 | 82.00 ± 1.41 (2 seeds) \
| -8.00 [-20.71, +4.71] | partial | 4 of 8 ep; also 1 failed | lab notebook |
| synthetic | ResNet-tiny + CutMix | 4 | top-1, median of last 2 ep | 80.00 | – | – | not run \
| method not in the results | lab notebook |
"""


def test_claims_table_every_status(results, claims_file):
    # The openmixup window keeps epochs >= 4 - 2 (three values): medians 70/72 (vanilla), 81/83 (mixup).
    compared = compare_all(load_claims([claims_file], published=False), load_results(results))
    assert markdown(claims_table(compared)) == CLAIMS_MD
    frame = claims_frame(compared)
    assert frame["status"].tolist() == ["reproduced", "above", "below", "partial", "not run"]
    # Two seeds: the t-interval's half-width t(0.975, 1 df) · 1.41/√2 = 12.71; two identical seeds: at least 0.3.
    assert frame["tolerance"].round(4).tolist() == [12.7062, 12.7062, 0.3, 12.7062, 0.3]
    assert frame["delta_ci_low"].round(2).tolist()[:4] == [-11.71, 9.29, -5.0, -20.71]
    assert frame["ci_high"].round(2).tolist()[:4] == [83.71, 94.71, 85.0, 94.71]
    assert pd.isna(frame["ci_low"].iloc[4])  # not run: no interval


def test_claims_with_the_exact_window(results, claims_file):
    compared = compare_all(load_claims([claims_file], published=False), load_results(results), window="exact")
    assert [cr.measured for cr in compared][:2] == [75.0, 83.5]  # the records' own medians


def test_published_claims_are_all_compared_for_a_matching_setting(tmp_path):
    """cifar10 × resnet18_cifar: every published CIFAR-10 ResNet-18 (CIFAR) accuracy claim gets a row."""
    root = tmp_path / "results"
    config = TrialConfig(suite="c", dataset={"name": "cifar10"}, backbone={"name": "resnet18_cifar"},
                         method="mixup", method_label="mixup", method_version=1, hparams={}, seed=0,
                         recipe={"epochs": 200, "batch_size": 100})
    write_config(root / config.dirname, config.model_dump(mode="json"))
    compared = compare_all(load_claims(), load_results(root))
    published = [c for c in load_claims() if c.dataset == "CIFAR-10" and c.mixbench_backbone == "resnet18_cifar"]
    # issue 15: FMix, ResizeMix, GridMix, SmoothMix and ManifoldMix × 4 budgets
    assert len(compared) == len(published) == 24 + 16 + 4
    assert {cr.status for cr in compared} == {"not run"}
    mixup = [cr for cr in compared if cr.claim.method == "mixup"]
    assert {cr.note for cr in mixup} == {"trials: 1 pending"}


def test_budgets_and_ranking_tables(tmp_path):
    root = tmp_path / "results"
    write_trial(root, "vanilla", 0, [60.0, 70.0], epochs=2)
    write_trial(root, "mixup", 0, [50.0, 65.0], epochs=2)
    write_trial(root, "vanilla", 0, [60.0, 70.0, 72.0, 74.0], epochs=4)
    write_trial(root, "mixup", 0, [50.0, 65.0, 75.0, 79.0], epochs=4)
    trials = load_results(root)
    ranking = ranking_tables(summarize_trials(trials))
    assert markdown(ranking[0]) == (
        "| Method | 2 ep | 4 ep |\n"
        "|---|---:|---:|\n"
        "| vanilla | 65.00 (#1) | 73.00 (#2) |\n"
        "| mixup | 57.50 (#2) | 77.00 (#1) |\n"
    )
    assert markdown(budgets_table(trials)) == (
        "| Dataset | Epochs | Trials | Status | Compute (trial-hours) | Wall clock (h) | Device |\n"
        "|---|---:|---:|---|---:|---:|---|\n"
        "| synthetic | 2 | 2 | 2 done | 0.00 | 0.50 | cpu |\n"
        "| synthetic | 4 | 2 | 2 done | 0.00 | 0.50 | cpu |\n"
    )


def test_settings_are_in_the_order_of_the_numbers_in_their_names(tmp_path):
    from mixbench.evidence import collect
    from mixbench.results import setting_order

    assert sorted(["fmnist_500", "fmnist_50", "fmnist_250", "cifar10"], key=setting_order) == [
        "cifar10", "fmnist_50", "fmnist_250", "fmnist_500"]
    assert sorted([("b_10", 2), ("b_9", 5), ("a", 1)], key=setting_order) == [("a", 1), ("b_9", 5), ("b_10", 2)]
    root = tmp_path / "results"
    for per_class in (500, 50, 250):
        write_trial(root, "vanilla", 0, [60.0, 70.0], epochs=2, per_class=per_class)
        write_trial(root, "mixup", 0, [50.0, 65.0], epochs=2, per_class=per_class)
    trials = load_results(root)
    summary = summarize_trials(trials)
    in_order = ["synthetic_50", "synthetic_250", "synthetic_500"]
    assert list(dict.fromkeys(summary["dataset"])) == in_order
    assert list(dict.fromkeys(results_frame(trials)["dataset"])) == in_order
    assert [t.title.split(", ")[1] for t in accuracy_tables(summary)] == in_order
    assert [row[0] for row in budgets_table(trials).rows] == in_order
    assert [e.setting[0] for e in collect(trials)] == in_order


def test_no_ranking_table_with_one_budget(results):
    assert ranking_tables(summarize_trials(load_results(results))) == []


# ---- plots -----------------------------------------------------------------------------------------------


def legend_labels(fig) -> list[list[str]]:
    return [ax.get_legend_handles_labels()[1] for ax in fig.axes if ax.get_visible()]


def test_plots_hold_one_series_per_method(results, claims_file, tmp_path):
    trials = load_results(results)
    summary = summarize_trials(trials)
    gain = plots.gain_over_vanilla(summary)
    assert legend_labels(gain) == [["mixup"]]
    bars = [c for c in gain.axes[0].containers if type(c).__name__ == "BarContainer"]
    assert [round(b.datavalues[0], 6) for b in bars] == [8.5]  # 83.5 - 75

    curves = plots.top1_vs_epoch(curves_frame(trials))
    assert legend_labels(curves) == [["vanilla (2 seeds)", "mixup (3 seeds, 1 unfinished)"]]
    assert list(curves.axes[0].lines[0].get_ydata()) == [51.0, 61.0, 71.0, 79.0]

    compared = claims_frame(compare_all(load_claims([claims_file], published=False), trials))
    claimed = plots.measured_vs_claimed(compared)
    assert legend_labels(claimed) == [["claimed", "measured: reproduced (1)", "measured: below (1)",
                                       "measured: above (1)", "measured: partial (1)"]]

    cost = plots.accuracy_vs_cost(summary)
    assert legend_labels(cost) == [["vanilla", "mixup"]]

    written = plots.save_figure(gain, tmp_path / "plots", "gain")
    assert [p.name for p in written] == ["gain.png", "gain.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written[1].read_bytes()[:5] == b"%PDF-"


def test_learning_curves_leave_out_settings_validated_at_one_epoch_and_say_so(tmp_path):
    root = tmp_path / "results"
    write_trial(root, "vanilla", 0, [60.0, 70.0], epochs=2)
    write_trial(root, "vanilla", 0, [60.0, 70.0, 72.0, 74.0], epochs=4)
    trials = load_results(root)
    curves = curves_frame(trials)
    once = curves[(curves["epochs"] == 4) & (curves["epoch"] < 4)].index  # as with recipe.eval_every: 4
    fig = plots.top1_vs_epoch(curves.drop(index=once))
    assert [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()] == [
        "synthetic, resnet_tiny_cifar, 2 epochs"]
    assert "left out: synthetic resnet_tiny_cifar 4 epochs" in fig._suptitle.get_text().replace("\n", " ")
    assert plots.top1_vs_epoch(curves[curves["epoch"] == 2]) is None  # no setting with a curve


def test_cost_plot_on_a_log_axis_writes_its_ticks_as_plain_numbers(tmp_path):
    root = tmp_path / "results"
    write_trial(root, "vanilla", 0, [60.0, 70.0], epochs=2, cost=(3.0, 500.0, 1000.0))  # 0.1 min
    write_trial(root, "vanilla", 0, [60.0, 70.0, 72.0, 74.0], epochs=4, cost=(45.0, 500.0, 1000.0))  # 3 min
    fig = plots.accuracy_vs_cost(summarize_trials(load_results(root)))
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    lo, hi = ax.get_xlim()
    shown = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
    assert shown == [f"{v:g}" for v in (0.1, 0.2, 0.5, 1, 2) if lo <= v <= hi]
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))  # the minor ticks stay unlabelled


def test_plots_with_nothing_to_draw_are_none():
    empty = pd.DataFrame()
    assert plots.gain_over_vanilla(empty) is None
    assert plots.top1_vs_epoch(empty) is None
    assert plots.measured_vs_claimed(empty) is None
    assert plots.accuracy_vs_cost(empty) is None


# ---- the report folder and the CLI ---------------------------------------------------------------------------


def test_write_report_folder(results, claims_file, tmp_path):
    out = tmp_path / "report"
    report = write_report(results, out, claims_files=[claims_file], command="mixbench report RESULTS")
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["README.md", "claims.csv", "plots/accuracy_vs_cost.pdf", "plots/accuracy_vs_cost.png",
                     "plots/gain_over_vanilla.pdf", "plots/gain_over_vanilla.png",
                     "plots/measured_vs_claimed.pdf", "plots/measured_vs_claimed.png",
                     "plots/paired_differences.pdf", "plots/paired_differences.png", "plots/top1_vs_epoch.pdf",
                     "plots/top1_vs_epoch.png", "results.csv", "results.tex", "summary.csv"]
    readme = (out / "README.md").read_text()
    assert ACCURACY_MD in readme and COST_MD in readme and CLAIMS_MD in readme
    for plot in ("gain_over_vanilla", "top1_vs_epoch", "measured_vs_claimed", "accuracy_vs_cost", "paired_differences"):
        assert f"![{plot}](plots/{plot}.png)" in readme
    assert "| demo-" not in readme  # trials are named by their folder
    assert "| synthetic-resnet_tiny_cifar-mixup-s2-" in readme and "RuntimeError: boom" in readme
    assert "mixbench report RESULTS" in readme
    assert "N+1 values" in readme
    tex = (out / "results.tex").read_text()
    assert ACCURACY_TEX in tex and COST_TEX in tex
    assert tex.count(r"\toprule") == 5  # budgets, accuracy, paired comparison, claims, cost
    assert len(report.claims) == 5


def test_report_without_matching_claims_says_so(results, tmp_path):
    write_report(results, tmp_path / "report")
    readme = (tmp_path / "report" / "README.md").read_text()
    assert "No published claim has the setting (dataset, backbone, image size) of these trials (synthetic)" in readme
    assert not (tmp_path / "report" / "plots" / "measured_vs_claimed.png").exists()


def test_cli_report_on_a_results_folder(results, claims_file, tmp_path, capsys):
    out = tmp_path / "cli_report"
    assert main(["report", str(results), "--out", str(out), "--claims", str(claims_file)]) == 0
    printed = capsys.readouterr().out
    assert "claims: 1 above, 1 below, 1 not run, 1 partial, 1 reproduced" in printed
    assert (out / "README.md").is_file() and (out / "results.tex").is_file()


def test_cli_report_keeps_the_findings_written_from_the_numbers(results, tmp_path, capsys):
    findings, out = tmp_path / "findings.md", tmp_path / "report"
    findings.write_text("## Findings\n\nMixup is 0.3 points better; not distinguishable from zero.\n")
    assert main(["report", str(results), "--out", str(out), "--findings", str(findings)]) == 0
    readme = (out / "README.md").read_text()
    assert readme.index("## Budgets") < readme.index("## Findings\n\nMixup is 0.3") < readme.index("## Accuracy")
    assert f"--findings={findings}" in readme  # the command that regenerates it keeps them
    capsys.readouterr()
    assert main(["report", str(results), "--out", str(out), "--findings", str(tmp_path / "none.md")]) == 2
    error = capsys.readouterr().out
    assert error.count("\n") == 1 and "error: --findings" in error and "none.md: no such file; fix:" in error


def test_cli_report_on_a_suite_gives_the_commands_that_rerun_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "demo.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "demo", "datasets": ["synthetic"], "backbones": ["resnet_tiny_cifar"], "methods": ["vanilla"],
        "recipe": {"epochs": 2, "batch_size": 10, "last_n": 2}, "results_dir": "runs",
    }))
    write_trial(tmp_path / "runs", "vanilla", 0, [60.0, 70.0], epochs=2)
    write_trial(tmp_path / "runs", "vanilla", 0, [60.0, 70.0, 72.0, 74.0], epochs=4)
    trials = load_results(tmp_path / "runs" / "demo")
    assert rerun_commands(suite, trials) == [f"mixbench run {suite}", f"mixbench run {suite} --set=recipe.epochs=4"]
    assert main(["report", str(suite), "--out", "rep"]) == 0
    readme = (tmp_path / "rep" / "README.md").read_text()
    assert f"mixbench run {suite} --set=recipe.epochs=4\nmixbench report {suite} --out rep" in readme


def test_cli_report_without_trials_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "no trials under" in capsys.readouterr().out


def test_minimal_report_after_a_run_still_works(results, tmp_path):
    table = write_minimal_report(results, tmp_path / "quick")
    assert table["seeds"].tolist() == ["2/3", "2/3"]
    assert table["status"].tolist() == ["1 pending", "1 failed"]
    # The same aggregation as the full report's summary, only formatted for the terminal.
    summary = summarize_trials(load_results(results))
    assert table["method"].tolist() == summary["method"].tolist() == ["vanilla", "mixup"]
    assert table["top1 (median last 2)"].tolist() == ["75.00 ± 0.00", "83.50 ± 0.71"]
    assert table["top1 (best)"].tolist() == ["79.00 ± 1.41", "85.00 ± 0.00"]
    assert (tmp_path / "quick" / "accuracy.md").is_file()


def test_two_settings_of_one_method_are_two_rows_never_pooled(results, tmp_path):
    trials = load_results(results)
    assert {t.record.method_label for t in trials} == {"vanilla", "mixup"}  # one setting each: plain labels
    config = write_trial(results, "vanilla", 0, [50.0, 60.0, 70.0, 80.0])
    edited = config.model_copy(update={"recipe": config.recipe.model_copy(update={"batch_size": 20})})
    write_config(results / "demo" / edited.dirname, edited.model_dump(mode="json"))  # pending, other batch size
    labels = {t.record.method_label for t in load_results(results)}
    assert {"vanilla (batch_size=20)", "mixup"} <= labels and "vanilla" not in labels
    made = write_report(results, tmp_path / "report")
    rows = made.summary[made.summary["method_name"] == "vanilla"]
    assert sorted(rows["method"]) == ["vanilla (batch_size=10)", "vanilla (batch_size=20)"]
    assert rows.set_index("method")["seeds_total"].to_dict() == {"vanilla (batch_size=10)": 3,
                                                                 "vanilla (batch_size=20)": 1}
    assert "Several settings of one method" in (tmp_path / "report" / "README.md").read_text()


def test_rerun_commands_name_the_seeds_and_methods_the_records_ran(tmp_path):
    """A suite that gained seeds and methods after its records were made (fashion_mnist: 3 -> 9 seeds, 6 -> 11
    methods)."""
    suite = tmp_path / "demo.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "demo", "datasets": ["synthetic"], "backbones": ["resnet_tiny_cifar"], "methods": ["vanilla", "fmix"],
        "seeds": [0, 1, 2, 3], "recipe": {"epochs": 2, "batch_size": 10, "last_n": 2},
    }))
    for seed in range(4):
        write_trial(tmp_path / "runs", "vanilla", seed, [60.0, 70.0], epochs=2)
        write_trial(tmp_path / "runs", "fmix", seed, [60.0, 70.0], epochs=2)
    for seed in range(2):
        write_trial(tmp_path / "runs", "vanilla", seed, [60.0, 70.0, 72.0, 74.0], epochs=4)
    assert rerun_commands(suite, load_results(tmp_path / "runs")) == [
        f"mixbench run {suite}",
        f"mixbench run {suite} --set=recipe.epochs=4 '--set=seeds=[0,1]' --only=method=vanilla"]  # quoted: [ ]
