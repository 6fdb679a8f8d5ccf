"""The report's evidence from hand-made records: paired tables, summary.csv columns, results.tex marks,
aggregates across settings, the forest and rank plots, and `mixbench report --baseline`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from scipy import stats as sp
from test_report import write_trial

from mixbench import evidence, plots
from mixbench.cli import main
from mixbench.report import TrialResult, load_results, markdown, write_report

VANILLA = [80.1, 80.7, 79.6, 80.3, 80.9, 80.2]
MIXUP_GAIN = [0.6, 1.1, 0.4, 0.9, 0.7, 1.3]  # better on every seed: p = 2/2⁶ with six pairs


def write_setting(root: Path, epochs: int, *, cutmix: bool = True, shift: float = 0.0) -> None:
    """vanilla and mixup on six seeds; cutmix finished seeds 0-3 only (4 failed, 5 pending) and is no better."""
    for seed, base in enumerate(VANILLA):
        write_trial(root, "vanilla", seed, [base + shift] * 2, epochs=epochs)
        write_trial(root, "mixup", seed, [base + shift + MIXUP_GAIN[seed]] * 2, epochs=epochs)
    if cutmix:
        for seed, delta in enumerate([0.3, -0.2, 0.1, -0.4]):
            write_trial(root, "cutmix", seed, [VANILLA[seed] + shift + delta] * 2, epochs=epochs)
        write_trial(root, "cutmix", 4, [float("nan")], epochs=epochs, status="failed", reason="loss is NaN")
        write_trial(root, "cutmix", 5, [], epochs=epochs, status="pending")


@pytest.fixture
def one_setting(tmp_path) -> Path:
    root = tmp_path / "results"
    write_setting(root, 2)
    return root


def test_paired_table_of_one_setting(one_setting):
    proof = evidence.collect(load_results(one_setting))
    [table] = evidence.paired_tables(proof)
    assert table.title == "Paired comparison with vanilla, synthetic, 2 epochs, resnet_tiny_cifar"
    by_method = {row[0]: row for row in table.rows}
    assert list(by_method) == ["vanilla (baseline)", "mixup", "cutmix"]
    mixup = by_method["mixup"]
    assert mixup[3:6] == ["6", "6", "+0.83"]  # seeds, paired, mean of the gains
    assert mixup[7:10] == ["0.031", "0.062", "no detectable difference"]  # 2/64, Holm × 2: not below 0.05
    cutmix = by_method["cutmix"]
    assert cutmix[3:5] == ["4", "4"] and cutmix[9] == "no detectable difference"
    assert cutmix[11] == "seeds 4, 5 only for vanilla"  # the failed and the pending seed are not paired
    assert cutmix[10] == "∞"  # four pairs can never reach p < 0.05
    assert table.bold == set()
    assert "6 paired seeds: no p below 2/2^6 = 0.0312, none below 0.0625 after Holm over 2 methods, so no " \
           "difference can be declared at α = 0.05 whatever the accuracies (7 seeds needed for 2 methods)" \
           in table.caption
    assert "4 paired seeds: no p below 2/2^4 = 0.125, none below 0.25 after Holm" in table.caption
    assert evidence.seed_count_note(3, 5) == (
        "3 paired seeds: no p below 2/2^3 = 0.25, none below 1 after Holm over 5 methods, so no difference can be "
        "declared at α = 0.05 whatever the accuracies (8 seeds needed for 5 methods)")
    assert evidence.seed_count_note(8, 5) == (
        "8 paired seeds: no p below 2/2^8 = 0.00781, none below 0.0391 after Holm over 5 methods")


def test_a_significant_difference_is_marked_in_markdown_latex_and_summary(tmp_path):
    root = tmp_path / "results"
    write_setting(root, 2, cutmix=False)  # mixup alone: Holm over one method, p = 2/64 < 0.05
    out = tmp_path / "report"
    write_report(root, out)
    [table] = evidence.paired_tables(evidence.collect(load_results(root)))
    assert table.rows[1][9] == "better" and table.bold == {(1, 5), (1, 9)}
    assert "| **+0.83** |" in markdown(table) and "| **better** |" in markdown(table)
    assert r"\textbf{+0.83}" in (out / "results.tex").read_text()
    summary = pd.read_csv(out / "summary.csv")
    mixup = summary[summary["method"] == "mixup"].iloc[0]
    assert (mixup["baseline"], mixup["paired_seeds"], mixup["verdict"]) == ("vanilla", 6, "better")
    assert mixup["p_value"] == pytest.approx(2 / 64) and mixup["p_holm"] == pytest.approx(2 / 64)
    assert mixup["diff_interval"] == "t" and mixup["diff_ci_low"] > 0
    assert mixup["top1_median_last_n_ci_low"] < mixup["top1_median_last_n_mean"] < mixup["top1_median_last_n_ci_high"]
    vanilla = summary[summary["method"] == "vanilla"].iloc[0]
    assert pd.isna(vanilla["verdict"]) and pd.isna(vanilla["p_value"])  # the baseline is not compared with itself
    readme = (out / "README.md").read_text()
    assert "## Is the difference real?" in readme and "![paired_differences](plots/paired_differences.png)" in readme


def test_one_seed_shows_na_never_an_interval(tmp_path):
    root = tmp_path / "results"
    write_trial(root, "vanilla", 0, [80.0, 80.0], epochs=2)
    write_trial(root, "mixup", 0, [81.0, 81.0], epochs=2)
    [table] = evidence.paired_tables(evidence.collect(load_results(root)))
    assert table.rows[0][:4] == ["vanilla (baseline)", "80.00", "n/a", "1"]
    assert table.rows[1][1:11] == ["81.00", "n/a", "1", "1", "+1.00", "n/a", "1.000", "–", "n/a", "n/a"]
    assert "Fewer than 2 paired seeds: no interval and no test" in table.caption


def test_another_baseline_and_a_missing_one(one_setting, tmp_path, capsys):
    [table] = evidence.paired_tables(evidence.collect(load_results(one_setting), "mixup"), "mixup")
    assert [row[0] for row in table.rows] == ["mixup (baseline)", "vanilla", "cutmix"]
    assert table.rows[1][5] == "-0.83"
    # The default baseline absent: the table says so instead of failing; a named one absent: an error.
    root = tmp_path / "no_vanilla"
    for seed in range(2):
        write_trial(root, "mixup", seed, [80.0 + seed] * 2, epochs=2)
        write_trial(root, "cutmix", seed, [80.5 + seed] * 2, epochs=2)
    [table] = evidence.paired_tables(evidence.collect(load_results(root)))
    assert table.caption.startswith("No finished vanilla trial in this setting")
    assert table.rows[0][-1] == "no baseline trial in this setting"
    assert main(["report", str(root), "--out", str(tmp_path / "r"), "--baseline", "puzzlemix"]) == 2
    assert ("--baseline puzzlemix: no finished trial of that method in these results; fix: --baseline one of "
            "cutmix, mixup") in capsys.readouterr().out
    assert main(["report", str(root), "--out", str(tmp_path / "r"), "--baseline", "mixup"]) == 0
    assert "--baseline=mixup" in (tmp_path / "r" / "README.md").read_text()  # in the command that regenerates it


def test_two_configurations_of_the_baseline_are_ambiguous():
    with pytest.raises(evidence.BaselineError, match=r"--baseline mixup: synthetic, 2 ep, r18 has 2 "
                                                      r"configurations of it \(mixup-a, mixup-b\); fix: --baseline "
                                                      r"one of those labels"):
        evidence.baseline_label({"mixup-a": "mixup", "mixup-b": "mixup"}, "mixup", ("synthetic", 2, "r18"))
    assert evidence.baseline_label({"mixup-a": "mixup", "v": "vanilla"}, "mixup", ("s", 2, "r")) == "mixup-a"


def test_by_default_an_ambiguous_baseline_is_a_note_not_a_failure(one_setting):
    trials = [TrialResult(t.record.model_copy(update={"method_label": f"vanilla-{t.record.seed % 2}"}), t.history,
                          t.path) if t.record.method == "vanilla" else t for t in load_results(one_setting)]
    [e] = evidence.collect(trials)
    assert e.baseline is None and "has 2 configurations of it (vanilla-0, vanilla-1)" in e.note
    [table] = evidence.paired_tables([e])
    assert table.caption.startswith("--baseline vanilla: synthetic, 2 ep, resnet_tiny_cifar has 2 configurations")
    with pytest.raises(evidence.BaselineError, match="fix: --baseline one of those labels"):
        evidence.collect(trials, "vanilla", strict=True)
    assert evidence.collect(trials, "vanilla-1", strict=True)[0].baseline.label == "vanilla-1"


def test_aggregates_and_ranks_across_settings(tmp_path):
    root = tmp_path / "results"
    write_setting(root, 2)
    write_setting(root, 3, shift=5.0)
    proof = evidence.collect(load_results(root))
    table = evidence.aggregate_table(proof)
    assert table.title == "Across settings, against vanilla"
    rows = {row[0]: row for row in table.rows}
    assert list(rows) == ["vanilla (baseline)", "mixup", "cutmix"]
    # The settings differ by a shift of 5 points: same gains, but 5 points less error left to remove.
    mixup = [v + g for v, g in zip(VANILLA, MIXUP_GAIN, strict=True)]
    base = sum(VANILLA) / 6
    scores = [(m - base) / (100 - base - shift) for m in mixup for shift in (0.0, 5.0)]
    assert rows["mixup"][1] == "2" and rows["mixup"][2] == f"{sp.trim_mean(scores, 0.25):+.3f}"
    assert rows["mixup"][4] == f"{sp.mannwhitneyu(mixup, VANILLA).statistic / 36:.2f}"
    assert rows["vanilla (baseline)"][4] == "0.50"  # against itself: ties count half
    assert [rows[m][6] for m in rows] == ["2.00", "1.00", "3.00"]  # by mean top-1: mixup, vanilla, cutmix
    assert plots.average_rank(evidence.rank_frame(proof)) is None  # two settings: no rank plot
    write_setting(root, 4, cutmix=False, shift=-3.0)
    proof = evidence.collect(load_results(root))
    fig = plots.average_rank(evidence.rank_frame(proof))
    assert fig is not None and "Average rank over 3 settings" in fig.axes[0].get_title()


def test_forest_plot_rows_zero_line_and_marks(one_setting):
    paired = evidence.paired_frame(evidence.collect(load_results(one_setting)))
    assert paired[["method", "paired_seeds", "verdict"]].values.tolist() == [
        ["mixup", 6, "no detectable difference"], ["cutmix", 4, "no detectable difference"]]
    fig = plots.paired_differences(paired)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cutmix (n=4)", "mixup (n=6)"]  # mixup on top
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.lines)  # the zero line
    assert plots.paired_differences(paired.iloc[0:0]) is None


def test_gain_by_size_plot_one_panel_per_compute_matched_budget_and_the_study_rerun_commands(tmp_path):
    from mixbench.figures import text_outside_canvas
    from mixbench.report import rerun_commands, sizes_frame

    root = tmp_path / "results"
    # Two sizes × two budgets of images seen per class (80: 8 and 2 epochs; 320: 32 and 8 epochs).
    for per_class, epochs in [(10, 8), (40, 2), (10, 32), (40, 8)]:
        for seed, base in enumerate(VANILLA):
            write_trial(root, "vanilla", seed, [base] * 2, epochs=epochs, per_class=per_class)
            gain = MIXUP_GAIN[seed] if per_class == 10 else -MIXUP_GAIN[seed]
            write_trial(root, "mixup", seed, [base + gain] * 2, epochs=epochs, per_class=per_class)
    trials = load_results(root)
    sizes = sizes_frame(trials)
    assert sorted(sizes[["dataset", "per_class"]].values.tolist()) == [["synthetic_10", 10], ["synthetic_40", 40]]
    paired = evidence.paired_frame(evidence.collect(trials))
    fig = plots.gain_by_size(paired, sizes)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["synthetic, resnet_tiny_cifar: 80 images seen per class",
                      "synthetic, resnet_tiny_cifar: 320 images seen per class"]
    ax = fig.axes[0]
    [line] = [line for line in ax.lines if line.get_gid() == "gain mixup"]
    assert list(line.get_ydata()) == pytest.approx([sum(MIXUP_GAIN) / 6, -sum(MIXUP_GAIN) / 6])  # 10, 40 per class
    assert text_outside_canvas(fig) == []
    # Epochs the same at every size: panels by epochs instead.
    same_epochs = paired[paired["epochs"].isin([8])]
    fig = plots.gain_by_size(same_epochs, sizes)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["synthetic, resnet_tiny_cifar: 8 epochs"]
    assert plots.gain_by_size(paired[paired["dataset"] == "synthetic_10"], sizes) is None  # one size: nothing
    # Each size ran its own budgets: the commands that rerun them name the dataset with --only.
    suite = tmp_path / "demo.yaml"
    suite.write_text(yaml_suite())
    assert rerun_commands(suite, trials) == [
        f"mixbench run {suite} --set=recipe.epochs=2 --only=dataset=synthetic_40",
        f"mixbench run {suite}",  # 8 epochs: the suite's own, at both sizes
        f"mixbench run {suite} --set=recipe.epochs=32 --only=dataset=synthetic_10",
    ]


def yaml_suite() -> str:
    return """name: demo
datasets:
  - {name: synthetic, label: synthetic_10, limit_per_class: 10}
  - {name: synthetic, label: synthetic_40, limit_per_class: 40}
backbones: [resnet_tiny_cifar]
methods: [vanilla, mixup]
seeds: [0, 1, 2, 3, 4, 5]
recipe: {epochs: 8, batch_size: 10, last_n: 2}
"""
