"""Calibration metrics pinned on hand-made logits (values computed by hand, not by the code under test)."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from mixbench.evaluation.calibration import (
    calibration_metrics,
    fit_temperature,
    reliability_bins,
    split_halves,
    temperature_scaled,
)


def two_class(groups: list[tuple[float, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax gives class 0 probability `p`, with `right` samples of label 0 and `wrong` of label 1,
    per (p, right, wrong) group."""
    logits, labels = [], []
    for p, right, wrong in groups:
        row = torch.tensor([math.log(p), math.log(1 - p)], dtype=torch.float64)
        logits += [row] * (right + wrong)
        labels += [0] * right + [1] * wrong
    return torch.stack(logits).float(), torch.tensor(labels)


def test_perfectly_calibrated_logits_have_zero_ece_and_mce():
    # confidence 0.8 with 8/10 right, 0.6 with 3/5 right: accuracy equals confidence in every bin
    logits, labels = two_class([(0.8, 8, 2), (0.6, 3, 2)])
    m = calibration_metrics(logits, labels)
    assert m["ece"] == pytest.approx(0, abs=1e-6)
    assert m["ece_10"] == pytest.approx(0, abs=1e-6)
    assert m["mce"] == pytest.approx(0, abs=1e-6)


def test_known_over_confidence():
    # 10 samples at 0.9 with 5 right (gap 0.4), 10 at 0.7 with 7 right (gap 0): ECE = 0.5 * 0.4, MCE = 0.4
    logits, labels = two_class([(0.9, 5, 5), (0.7, 7, 3)])
    m = calibration_metrics(logits, labels)
    assert m["ece"] == pytest.approx(0.2, abs=1e-6)
    assert m["ece_10"] == pytest.approx(0.2, abs=1e-6)
    assert m["mce"] == pytest.approx(0.4, abs=1e-6)
    # NLL: -(5 log .9 + 5 log .1 + 7 log .7 + 3 log .3) / 20
    nll = -(5 * math.log(0.9) + 5 * math.log(0.1) + 7 * math.log(0.7) + 3 * math.log(0.3)) / 20
    assert m["nll"] == pytest.approx(nll, rel=1e-5)
    # Brier: a right sample at p contributes 2(1-p)^2, a wrong one 2p^2
    brier = (5 * 2 * 0.1**2 + 5 * 2 * 0.9**2 + 7 * 2 * 0.3**2 + 3 * 2 * 0.7**2) / 20
    assert m["brier"] == pytest.approx(brier, rel=1e-5)


def test_ten_and_fifteen_bins_differ_where_the_bins_do():
    # 0.62 (all right) and 0.68 (all wrong) share the 10-bin [0.6, 0.7) but not a 15-bin (edge at 2/3)
    logits, labels = two_class([(0.62, 10, 0), (0.68, 0, 10)])
    m = calibration_metrics(logits, labels)
    assert m["ece"] == pytest.approx(0.5 * 0.38 + 0.5 * 0.68, abs=1e-6)
    assert m["ece_10"] == pytest.approx(abs(0.65 - 0.5), abs=1e-6)


def test_reliability_bins_reproduce_torchmetrics_ece():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 7, generator=gen) * 3
    labels = torch.randint(0, 7, (500,), generator=gen)
    bins = reliability_bins(logits, labels)
    n = sum(bins["count"])
    ece = sum(c / n * abs(a - f) for c, a, f in zip(bins["count"], bins["accuracy"], bins["confidence"], strict=True)
              if c)
    expected = multiclass_calibration_error(logits.softmax(1), labels, num_classes=7, n_bins=15, norm="l1")
    assert n == 500
    assert ece == pytest.approx(float(expected), abs=1e-5)


def test_temperature_scaling_recovers_a_known_temperature():
    gen = torch.Generator().manual_seed(1)
    true_logits = torch.randn(6000, 5, generator=gen) * 2
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=gen).squeeze(1)
    assert fit_temperature(true_logits * 3, labels) == pytest.approx(3.0, rel=0.1)
    scaled = temperature_scaled(true_logits * 3, labels, seed=0)
    assert scaled["temperature"] == pytest.approx(3.0, rel=0.1)
    assert scaled["ece_ts"] < scaled["ece_ts_before"] / 3


def test_temperature_split_is_a_seeded_partition():
    fit, held = split_halves(11, seed=4)
    assert sorted(torch.cat([fit, held]).tolist()) == list(range(11))
    again = split_halves(11, seed=4)
    assert torch.equal(fit, again[0]) and torch.equal(held, again[1])
    assert not torch.equal(fit, split_halves(11, seed=5)[0])
