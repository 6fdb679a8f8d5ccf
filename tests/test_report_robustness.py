"""The report's calibration and robustness tables, from records with hand-made evaluation summaries."""

from __future__ import annotations

import pytest
from trial_configs import synthetic_trial

from mixbench import report_robustness as rr
from mixbench.report import TrialResult
from mixbench.results import pending_record


def trial(tmp_path, method: str, seed: int, **summary) -> TrialResult:
    config = synthetic_trial("s", method, 2, seed=seed)
    record = pending_record(config.model_dump(mode="json")).model_copy(
        update={"status": "done", "evaluation": {"model": summary}})
    return TrialResult(record, [], tmp_path / config.dirname)


def summary(top1: float, by_name: dict[str, float], ece: float = 0.1) -> dict:
    return {"top1": top1, "ece": ece, "ece_10": ece, "mce": 2 * ece, "nll": 1.0, "brier": 0.5, "ece_ts": ece / 2,
            "temperature": 1.5, "corruption_top1": sum(by_name.values()) / len(by_name),
            "corruption_top1_by_name": by_name, "occlusion_top1": {"0.5": top1 - 10}, "fgsm_top1": 5.0,
            "fgsm_epsilon": 8 / 255}


def test_mce_and_relative_mce_use_vanilla_as_the_baseline(tmp_path):
    # errors: vanilla clean 20, a 50, b 40; mixup clean 10, a 25, b 40
    vanilla = [trial(tmp_path, "vanilla", s, **summary(80, {"a": 50, "b": 60})) for s in (0, 1)]
    mixup = [trial(tmp_path, "mixup", s, **summary(90, {"a": 75, "b": 60})) for s in (0, 1)]
    rows = {"vanilla": [(t, t.record.evaluation["model"]) for t in vanilla],
            "mixup": [(t, t.record.evaluation["model"]) for t in mixup]}
    # mCE = mean(25/50, 40/40) = 75; relative = mean((25-10)/(50-20), (40-10)/(40-20)) = 100
    assert rr.mce(rows["mixup"], rows["vanilla"]) == pytest.approx((75.0, 100.0))
    assert rr.mce(rows["vanilla"], rows["vanilla"]) == pytest.approx((100.0, 100.0))

    made = rr.tables([*mixup, *vanilla])
    (robustness,) = made["robustness"]
    assert [row[0] for row in robustness.rows] == ["vanilla", "mixup"]  # table order, not input order
    assert robustness.rows[1][3:6] == ["67.50 ± 0.00 [67.50, 67.50]", "75.0", "100.0"]
    assert "Occluded 50% top-1 (%)" in robustness.columns
    # summaries from before the protocols name none: CIFAR-C's; newer ones name theirs
    assert "Hendrycks' definitions at CIFAR-10-C's parameters" in robustness.caption
    tiny = [trial(tmp_path, "vanilla", 0, **summary(80, {"a": 50}), corruption_protocol="tiny_imagenet")]
    assert "at Tiny-ImageNet-C's parameters" in rr.tables(tiny)["robustness"][0].caption
    (calibration,) = made["calibration"]
    assert calibration.rows[0][2:4] == ["80.00 ± 0.00 [80.00, 80.00]", "10.00 ± 0.00 [10.00, 10.00]"]  # ECE in %
    (per_corruption,) = made["per_corruption"]
    assert per_corruption.columns == ["Method", "a", "b"] and per_corruption.rows[1] == ["mixup", "75.0", "60.0"]


def test_no_evaluated_trial_means_no_section(tmp_path):
    plain = trial(tmp_path, "vanilla", 0).record.model_copy(update={"evaluation": {}})
    made = rr.tables([TrialResult(plain, [], tmp_path)])
    assert made == {"calibration": [], "robustness": [], "per_corruption": []}
    assert rr.readme_lines(made, set()) == []
    assert rr.figures([TrialResult(plain, [], tmp_path)]) == {"accuracy_vs_ece": None}
