"""Every report plot as a reader meets it: rendered to PNG, with no text off the canvas, legends off the data,
point labels apart, and headers that name the statistic actually computed."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from mixbench import evidence, plots
from mixbench.claims import COLUMNS, compare_all, load_claims
from mixbench.figures import legend_beside, place_point_labels, renderer, save, text_outside_canvas, wrap_title
from mixbench.report import accuracy_tables, claims_frame, curves_frame, load_results, summarize_trials
from mixbench.results import TrialRecord, summarize, write_config, write_metrics, write_record
from mixbench.suite import TrialConfig

PNG = b"\x89PNG\r\n\x1a\n"


def write_trial(root: Path, method: str, seed: int, top1s: list[float], epochs: int, last_n: int,
                seconds: float) -> None:
    config = TrialConfig(suite="demo", dataset={"name": "synthetic"}, backbone={"name": "resnet_tiny_cifar"},
                         method=method, method_label=method, method_version=1, hparams={}, seed=seed,
                         recipe={"epochs": epochs, "batch_size": 10, "last_n": last_n})
    trial_dir = root / "demo" / config.dirname
    write_config(trial_dir, config.model_dump(mode="json"))
    history = [{"epoch": i + 1, "top1": v, "top5": v + 5, "epoch_seconds": seconds} for i, v in enumerate(top1s)]
    write_metrics(trial_dir, history)
    top1 = summarize(history, "top1", last_n)
    write_record(trial_dir, TrialRecord(
        trial_id=config.trial_id, suite="demo", dataset="synthetic", backbone="resnet_tiny_cifar", method=method,
        method_label=method, method_version=1, hparams={}, seed=seed, status="done", epochs=epochs,
        epochs_done=len(top1s), top1=top1["last"], top1_best=top1["best"], top1_best_epoch=top1["best_epoch"],
        top1_median_last_n=top1["median_last_n"], last_n=last_n, time_total_s=seconds * len(top1s),
        started_at="2025-01-01T00:00:00+00:00", updated_at="2025-01-01T00:30:00+00:00",
        config=config.model_dump(mode="json")))


METHODS = ["vanilla", "mixup", "cutmix", "saliencymix", "puzzlemix", "automix"]


@pytest.fixture
def results(tmp_path) -> Path:
    """Six methods at 2, 6 and 12 epochs, last_n 10 (so the medians are of 2, 6 and 10 epochs), 2 seeds, with
    accuracies and times so close that naive point labels would collide."""
    root = tmp_path / "results"
    for k, method in enumerate(METHODS):
        for seed in (0, 1):
            write_trial(root, method, seed, [60.0 + k * 0.1, 70.0 + k * 0.1 + seed], 2, 10, 10.0 + k * 0.05)
            write_trial(root, method, seed, [50.0, 60, 70, 80, 85, 86 + k * 0.1 + seed], 6, 10, 10.0 + k * 0.05)
            write_trial(root, method, seed, [50.0 + i + k * 0.2 + seed for i in range(12)], 12, 10, 10.0 + k * 0.05)
    return root


@pytest.fixture
def claims_file(tmp_path) -> Path:
    path = tmp_path / "claims.csv"
    rows = [f"synthetic,ResNet-tiny,resnet_tiny_cifar,{m},6,top1_acc,{80 + i},32,lab notebook,stat=best top-1"
            for i, m in enumerate(METHODS)]
    path.write_text(",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return path


def every_plot(results: Path, claims_file: Path) -> dict[str, Figure]:
    trials = load_results(results)
    summary = summarize_trials(trials)
    compared = claims_frame(compare_all(load_claims([claims_file], published=False), trials))
    proof = evidence.collect(trials)
    return {"gain_over_vanilla": plots.gain_over_vanilla(summary), "top1_vs_epoch": plots.top1_vs_epoch(
        curves_frame(trials)), "measured_vs_claimed": plots.measured_vs_claimed(compared),
        "accuracy_vs_cost": plots.accuracy_vs_cost(summary),
        "paired_differences": plots.paired_differences(evidence.paired_frame(proof)),
        "average_rank": plots.average_rank(evidence.rank_frame(proof))}


def extent(artist, fig) -> Bbox:
    return artist.get_window_extent(renderer(fig))


def test_every_report_plot_keeps_its_text_on_the_canvas_and_its_legend_off_the_data(results, claims_file, tmp_path):
    for name, fig in every_plot(results, claims_file).items():
        assert fig is not None, name
        assert text_outside_canvas(fig) == [], name
        for ax in fig.axes:
            legend = ax.get_legend()
            if ax.get_visible() and legend is not None:
                assert not extent(legend, fig).overlaps(ax.get_window_extent(renderer(fig))), name
        png = save(fig, tmp_path / f"{name}.png", dpi=80)
        assert png.read_bytes()[:8] == PNG


def test_point_labels_do_not_overlap(results, claims_file):
    fig = every_plot(results, claims_file)["accuracy_vs_cost"]
    boxes = [extent(t, fig) for t in fig.axes[0].texts]
    assert len(boxes) == 3 * len(METHODS)  # one "N ep" label per method and budget
    assert not [(i, j) for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]


def test_headers_name_the_window_actually_used(results, claims_file):
    """last_n is 10, but a 2-epoch trial's median is of 2 epochs and a 6-epoch one's of 6."""
    tables = {t.title: t for t in accuracy_tables(summarize_trials(load_results(results)))}
    assert [row[1] for row in tables["Top-1 accuracy (%), synthetic, 2 epochs"].rows] == ["median last 2", "best"]
    assert [row[1] for row in tables["Top-1 accuracy (%), synthetic, 6 epochs"].rows] == ["median last 6", "best"]
    assert [row[1] for row in tables["Top-1 accuracy (%), synthetic, 12 epochs"].rows] == ["median last 10", "best"]
    gain = every_plot(results, claims_file)["gain_over_vanilla"]
    assert [ax.get_title() for ax in gain.axes if ax.get_visible()] == [
        "synthetic, 2 epochs (median of last 2)", "synthetic, 6 epochs (median of last 6)",
        "synthetic, 12 epochs (median of last 10)"]
    cost = every_plot(results, claims_file)["accuracy_vs_cost"]
    assert cost.axes[0].get_ylabel().startswith("median top-1 of last 2/6/10 epochs (%)")


def test_a_long_title_is_wrapped_to_fit_a_narrow_figure():
    fig = Figure(figsize=(3.0, 2.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], label="a series")
    long = "Gain over vanilla: median top-1 of the last N epochs, mean over seeds (error: ±1 std)"
    fig.suptitle(long)
    assert long in text_outside_canvas(fig)  # the check sees a clipped title
    fig.suptitle(wrap_title(long, 3.0))
    legend_beside(ax)
    assert text_outside_canvas(fig) == []


def test_labels_of_coincident_points_are_moved_apart():
    fig = Figure(figsize=(4.0, 3.0), layout="constrained")
    ax = fig.add_subplot()
    points = [(1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (2.0, 2.0)]
    ax.plot(*zip(*points, strict=True), "o")
    labels = place_point_labels(ax, points, ["6 ep", "12 ep", "24 ep", "6 ep"])
    boxes = [extent(t, fig) for t in labels]
    assert not [(i, j) for i in range(4) for j in range(i) if boxes[i].overlaps(boxes[j])]
    again = Figure(figsize=(4.0, 3.0), layout="constrained")
    ax2 = again.add_subplot()
    ax2.plot(*zip(*points, strict=True), "o")
    assert [t.get_position() for t in place_point_labels(ax2, points, ["6 ep", "12 ep", "24 ep", "6 ep"])] == [
        t.get_position() for t in labels]  # deterministic
