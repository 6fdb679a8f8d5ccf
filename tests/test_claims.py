"""Published claims as package data, the name maps, the claim's own statistic, and every comparison status."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from mixbench.claims import (
    COLUMNS,
    Claim,
    Statistic,
    claim_backbone,
    claim_dataset,
    compare,
    compare_all,
    image_sizes,
    last_n_window,
    load_claims,
    median_last_n,
    parse_statistic,
    published_claims_path,
    read_claims,
    short_backbone,
)
from mixbench.results import TrialRecord

# ---- the data --------------------------------------------------------------------------------------------


def test_published_claims_are_package_data_with_sources():
    assert published_claims_path().parent.name == "claims"
    claims = load_claims()
    # 437 from the project's collection; issue 15: 188 openmixup rows of FMix, ResizeMix, GridMix and SmoothMix,
    # 50 of ManifoldMix and TransMix.
    assert len(claims) == 437 + 188 + 50
    assert all(c.source and c.note for c in claims)
    assert {c.method for c in claims} >= {"vanilla", "mixup", "cutmix", "saliencymix", "puzzlemix", "automix"}
    assert {c.method for c in claims} >= {"fmix", "resizemix", "gridmix", "smoothmix"}


def test_claims_is_a_package_not_a_module():
    spec = importlib.util.find_spec("mixbench.claims")
    assert spec.submodule_search_locations, "mixbench.claims must be the package mixbench/claims/"


def test_user_claims_file_adds_to_the_published_ones(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(",".join(COLUMNS) + "\n"
                    "fashion_mnist,tiny,resnet_tiny_cifar,mixup,8,top1_acc,91.5,28,my lab notebook,stat=best epoch\n")
    claims = load_claims([path])
    assert len(claims) == len(load_claims()) + 1
    mine = claims[-1]
    assert (mine.dataset, mine.mixbench_backbone, mine.epochs, mine.value) == ("fashion_mnist", "resnet_tiny_cifar",
                                                                                8, 91.5)
    assert load_claims([path], published=False) == [mine]


def test_claims_file_without_a_column_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("dataset,method,value\nCIFAR-10,mixup,95\n")
    with pytest.raises(ValueError, match=r"bad.csv: missing column\(s\) backbone, timm_model, epochs, metric, "
                                         r"image_size, source, note"):
        read_claims(path)


# ---- names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mixbench", "claim"), [
    ("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100"), ("tiny_imagenet", "Tiny-ImageNet"),
    ("imagenet", "ImageNet-1k"), ("inat2018", "iNaturalist2018"), ("places205", "Places205"),
    ("cub200", "CUB-200-2011"), ("fashion_mnist", "fashion_mnist"),
])
def test_dataset_names(mixbench, claim):
    assert claim_dataset(mixbench) == claim


@pytest.mark.parametrize(("timm_model", "backbone", "expected"), [
    ("resnet18 [CIFAR-stem variant; not stock timm]", "ResNet-18 (CIFAR variant: 3x3 stride-1 stem, no maxpool)",
     "resnet18_cifar"),
    ("resnext50_32x4d [CIFAR-stem variant; not stock timm]", "ResNeXt-50 (AutoMix)", "resnext50_32x4d_cifar"),
    ("none (wide_resnet28_8 is not in timm; timm wide_resnet50_2 is a different net)",
     "WRN-28-8 (CIFAR WideResNet, 3 stages)", "wrn28_8"),
    ("none (WRN-28-10 CIFAR not in timm)", "WRN-28-10", "wrn28_10"),
    ("none (PyramidNet not in timm)", "PyramidNet-200 (widening 240)", None),
    ("resnet18", "ResNet-18", "resnet18"),
    ("resnet101", "ResNet-101", "resnet101"),
    ("resnext101_32x4d", "ResNeXt-101 32x4d", "resnext101_32x4d"),
])
def test_backbone_names(timm_model, backbone, expected):
    assert claim_backbone(timm_model, backbone) == expected


def test_every_published_cifar_stem_row_maps_to_a_cifar_backbone():
    for claim in load_claims():
        if "CIFAR-stem" in claim.timm_model:
            assert claim.mixbench_backbone.endswith("_cifar")


def test_short_backbone_and_image_sizes():
    assert short_backbone("ResNet-18 (CIFAR variant: 3x3 stride-1 stem, no maxpool)") == "ResNet-18 (CIFAR)"
    assert short_backbone("ResNet-50 (RSB A2)") == "ResNet-50 (RSB A2)"
    assert image_sizes("224") == (224, 224)
    assert image_sizes("160 train / 224 test") == (160, 224)
    assert image_sizes("") is None


# ---- the statistic ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("note", "expected"), [
    ("stat=median top-1 of last 10 epochs; Beta alpha=1", Statistic("median_last_n", 10, "stat")),
    ("stat=median top-1 of last 5 epochs; Beta alpha=0.2", Statistic("median_last_n", 5, "stat")),
    ("stat=BEST top-1 of last 10 epochs; Beta alpha=2", Statistic("best_last_n", 10, "stat")),
    ("stat=mean of BEST top-1 over 3 trials; DeiT", Statistic("best", None, "stat")),
    ("converted from CONVERGED (final) top-1 error 16.97%; mean of 3 seeds", Statistic("last", None, "note")),
    ("converted from top-5 error 7.05% (best); CutMix-setting baseline", Statistic("best", None, "note")),
    ("converted from top-1 error 22.58%; best; trained by CutMix authors", Statistic("best", None, "note")),
    ("paper claim; equals openmixup docs value (100ep, median of last 5 epochs)",
     Statistic("median_last_n", 5, "note")),
    ('converted from test error 5.53%; "typical training session" (single run; final vs best not stated, script '
     'keeps best ckpt)', Statistic("median_last_n", 10, "assumed")),
    ("paper claim; equals openmixup docs value (400ep)", Statistic("median_last_n", 10, "assumed")),
])
def test_parse_statistic(note, expected):
    assert parse_statistic(note) == expected


def test_every_published_statistic_is_read_from_stat_when_it_is_there():
    for claim in load_claims():
        if "stat=" in claim.note:
            assert claim.statistic.basis == "stat", claim.note


def test_last_n_window_both_conventions():
    history = [(epoch, float(epoch)) for epoch in range(1, 13)]  # value = epoch, 12 epochs
    # openmixup keeps epoch >= E - N: epochs 2..12, N+1 = 11 values.
    assert last_n_window(history, 10, "openmixup") == [float(e) for e in range(2, 13)]
    assert median_last_n(history, 10, "openmixup") == 7.0
    # The exact reading keeps the last N = 10: epochs 3..12.
    assert last_n_window(history, 10, "exact") == [float(e) for e in range(3, 13)]
    assert median_last_n(history, 10, "exact") == 7.5
    # Shorter runs: everything there is.
    assert median_last_n(history[:4], 10, "openmixup") == median_last_n(history[:4], 10, "exact") == 2.5
    with pytest.raises(ValueError, match="unknown window"):
        last_n_window(history, 10, "n+2")


def test_statistic_of_a_history():
    history = [(1, 50.0), (2, 70.0), (3, 60.0), (4, 65.0)]
    assert Statistic("best").of(history) == 70.0
    assert Statistic("last").of(history) == 65.0
    assert Statistic("best_last_n", 2).of(history, "exact") == 65.0
    assert Statistic("best_last_n", 2).of(history, "openmixup") == 70.0
    assert Statistic("median_last_n", 2).of(history, "exact") == 62.5
    assert Statistic("median_last_n", 2).of(history, "openmixup") == 65.0
    assert Statistic("median_last_n", 2, "assumed").describe() == "median of last 2 ep (assumed)"


# ---- comparing -------------------------------------------------------------------------------------------


@dataclass
class Trial:
    record: TrialRecord
    history: list[dict[str, Any]] = field(default_factory=list)


def trial(values: list[float], method: str = "mixup", seed: int = 0, epochs: int | None = None,
          status: str = "done", dataset: str = "cifar10", backbone: str = "resnet18_cifar",
          label: str | None = None, image_size: int | None = None) -> Trial:
    epochs = epochs or len(values)
    record = TrialRecord(
        trial_id=f"{method}{seed}{epochs}", suite="t", dataset=dataset, backbone=backbone, method=method,
        method_label=label or method, method_version=1, hparams={}, seed=seed, status=status, epochs=epochs,
        epochs_done=len(values), config={"recipe": {"image_size": image_size}},
    )
    return Trial(record, [{"epoch": i + 1, "top1": v, "top5": v + 2} for i, v in enumerate(values)])


CLAIM = Claim(dataset="CIFAR-10", backbone="ResNet-18 (CIFAR variant: 3x3 stride-1 stem, no maxpool)",
              timm_model="resnet18 [CIFAR-stem variant; not stock timm]", method="mixup", epochs=4,
              metric="top1_acc", value=95.0, image_size="32", source="test",
              note="stat=median top-1 of last 2 epochs")


def seeds(*finals: tuple[float, float, float]) -> list[Trial]:
    """Trials whose last three epochs are given (openmixup median of last 2 = median of those three)."""
    return [trial([10.0, *values], seed=i) for i, values in enumerate(finals)]


def test_reproduced_inside_the_95_percent_interval_of_the_measured_mean():
    result = compare(CLAIM, seeds((94.0, 95.1, 96.0), (94.0, 95.2, 96.0), (95.3, 95.3, 94.0)))
    assert result.status == "reproduced"
    assert result.measured == pytest.approx(95.2)
    assert result.std == pytest.approx(0.1)
    half = 4.302652729911275 * 0.1 / 3**0.5  # t(0.975, 2 df) · s/√n
    assert result.tolerance == pytest.approx(half)  # from 3 seeds the interval alone, no minimum
    assert (result.interval.low, result.interval.high) == pytest.approx((95.2 - half, 95.2 + half))
    assert (result.delta_interval.low, result.delta_interval.high) == pytest.approx((0.2 - half, 0.2 + half))
    assert (result.seeds, result.seeds_total, result.epochs) == (3, 3, 4)


def test_outside_the_interval_is_above_or_below():
    above = compare(CLAIM, seeds((0, 95.3, 99), (0, 95.4, 99), (0, 95.5, 99)))  # 95.4 ± 0.25 misses 95
    assert (above.status, round(above.delta, 6)) == ("above", 0.4)
    wide = compare(CLAIM, seeds((0, 94.0, 99), (0, 95.0, 99), (0, 92.0, 99)))  # 93.67 ± 3.79 holds 95
    assert wide.status == "reproduced"
    assert compare(CLAIM, seeds((0, 90.0, 99), (0, 91.0, 99), (0, 89.0, 99))).status == "below"  # 90 ± 2.48


def test_one_and_two_seeds_keep_a_minimum_tolerance():
    above = compare(CLAIM, seeds((95.0, 95.5, 96.0)))  # one seed: no interval, tolerance 0.3
    assert (above.status, above.std, above.tolerance, above.interval) == ("above", None, 0.3, None)
    assert above.delta == pytest.approx(0.5)
    assert compare(CLAIM, seeds((95.0, 95.2, 96.0))).status == "reproduced"
    identical = compare(CLAIM, seeds((0, 95.2, 99), (0, 95.2, 99)))  # a zero-width interval, widened to 0.3
    assert (identical.status, identical.tolerance) == ("reproduced", 0.3)
    # Two seeds 0.1 apart: t with 1 df gives ± 0.64, so 94.55 cannot be told from 95.
    two = compare(CLAIM, seeds((94.0, 94.5, 94.6), (94.0, 94.6, 94.7)))
    assert two.status == "reproduced" and two.tolerance == pytest.approx(12.706204736 * 0.070710678 / 2**0.5)


def test_the_claims_own_statistic_is_used():
    best = replace(CLAIM, note="stat=mean of BEST top-1 over 3 trials")
    result = compare(best, [trial([95.0, 96.0, 93.0, 92.0])])
    assert result.measured == 96.0
    assert result.claim.describe_metric() == "top-1, best epoch"
    top5 = replace(CLAIM, metric="top5_acc", note="converted from top-5 error (best)")
    assert compare(top5, [trial([95.0, 96.0, 93.0, 92.0])]).measured == 98.0


def test_window_convention_changes_the_median():
    history = [0.0, 1.0, 2.0, 3.0]  # last 2 epochs, openmixup: epochs 2..4 -> median 2; exact: 2.5
    assert compare(CLAIM, [trial(history)]).measured == 2.0
    assert compare(CLAIM, [trial(history)], window="exact").measured == 2.5


def test_partial_when_fewer_epochs_than_the_claim():
    result = compare(replace(CLAIM, epochs=200), seeds((95.0, 95.0, 95.0)))
    assert (result.status, result.epochs, result.measured) == ("partial", 4, 95.0)
    assert result.note == "4 of 200 ep"


def test_the_claims_budget_is_preferred_to_a_shorter_one():
    trials = [trial([90.0, 90.0, 90.0], seed=0), trial([95.0] * 8, seed=0)]
    result = compare(replace(CLAIM, epochs=8), trials)
    assert (result.status, result.epochs, result.measured) == ("reproduced", 8, 95.0)


def test_not_run():
    assert compare(CLAIM, []).status == "not run"
    failed = compare(CLAIM, [trial([50.0], status="failed", epochs=4), trial([], status="pending", epochs=4)])
    assert (failed.status, failed.note, failed.measured) == ("not run", "trials: 1 failed, 1 pending", None)
    longer = compare(CLAIM, [trial([95.0] * 8)])
    assert (longer.status, longer.note) == ("not run", "only longer budgets finished (8 ep)")


def test_unfinished_seeds_are_counted_but_not_averaged():
    trials = [*seeds((95.0, 95.0, 95.0)), trial([99.0, 99.0], seed=1, epochs=4, status="running")]
    result = compare(CLAIM, trials)
    assert (result.measured, result.seeds, result.seeds_total, result.note) == (95.0, 1, 2, "also 1 running")


def test_unknown_claim_epochs_take_the_longest_budget():
    result = compare(replace(CLAIM, epochs=None), [trial([90.0] * 4), trial([95.0] * 8)])
    assert (result.status, result.epochs) == ("reproduced", 8)


def test_compare_all_matches_dataset_backbone_method_and_image_size():
    claims = [
        CLAIM,
        replace(CLAIM, method="cutmix"),  # not in the results: not run
        replace(CLAIM, dataset="CIFAR-100"),  # another dataset: left out
        replace(CLAIM, timm_model="resnet18", backbone="ResNet-18"),  # stock timm resnet18: left out
        replace(CLAIM, image_size="64"),  # another resolution: left out
        replace(CLAIM, metric="gpu_memory_GB"),  # a cost claim: not compared
    ]
    trials = [*seeds((95.0, 95.0, 95.0)), trial([96.0] * 4, label="mixup-a1", seed=0)]
    results = compare_all(claims, trials)
    assert [(r.claim.method, r.method_label, r.status) for r in results] == [
        ("mixup", "mixup", "reproduced"), ("mixup", "mixup-a1", "above"), ("cutmix", "cutmix", "not run"),
    ]
    assert results[2].note == "method not in the results"


def test_a_trials_own_image_size_counts():
    upsampled = [trial([95.0] * 4, image_size=64)]
    assert compare_all([CLAIM], upsampled) == []
    assert compare_all([replace(CLAIM, image_size="64")], upsampled)[0].status == "reproduced"
