"""mixbench.stats against independently computed values: scipy's own routines on fixed arrays, exact
permutation p-values counted by hand, Holm by hand, and the degenerate inputs a benchmark produces."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sp

from mixbench import stats

BASE = [80.13, 79.71, 81.02, 80.55, 79.98, 80.64]  # decimals, so float round-off meets the exact test's ties


def paired(differences: list[float]) -> tuple[dict[int, float], dict[int, float]]:
    """{seed: method value}, {seed: baseline value} whose per-seed differences are `differences`."""
    base = {seed: BASE[seed] for seed in range(len(differences))}
    return {seed: base[seed] + d for seed, d in enumerate(differences)}, base


# ---- the exact sign-flip test ------------------------------------------------------------------------------

# Two-sided p = 2 · #{sign patterns whose sum ≥ the observed sum} / 2ⁿ (the null is symmetric), counted by hand.
# For |d| = 1..n and observed sum T, flipping the subset S gives total − 2·sum(S) ≥ T, i.e. sum(S) ≤ (total − T)/2.
HAND_P = [
    ([1, 2, 3], 2 * 1 / 8),  # only all-positive reaches 6
    ([1, 1, -1], 1.0),  # sums 3 (1 way) and 1 (3 ways) reach 1: 2 · 4/8, capped at 1
    ([3, -1, 2], 2 * 2 / 8),  # T = 4 of 6: S = {} or {1}
    ([1, 2, 3, 4], 2 * 1 / 16),
    ([-1, 2, 3, 4], 2 * 2 / 16),  # T = 8 of 10: S = {} or {1}
    ([1, 2, 3, 4, 5], 2 * 1 / 32),
    ([1, 2, 3, 4, -5], 2 * 10 / 32),  # T = 5 of 15: sum(S) ≤ 5: {}, 5 singletons, {1,2} {1,3} {1,4} {2,3}
    ([1, 2, 3, 4, 5, 6], 2 * 1 / 64),
    ([-1, 2, 3, 4, 5, 6], 2 * 2 / 64),  # T = 19 of 21: S = {} or {1}
]


@pytest.mark.parametrize(("differences", "expected"), HAND_P)
def test_exact_sign_flip_p_values_counted_by_hand(differences, expected):
    method, base = paired(differences)
    result = stats.paired_comparison(method, base)
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    assert result.min_p == 2 / 2 ** len(differences)


@pytest.mark.parametrize("seed", range(4))
def test_sign_flip_p_value_equals_brute_force_enumeration(seed):
    rng = np.random.default_rng(seed)
    d = np.round(rng.normal(0.3, 1.0, 3 + seed), 2)
    observed = abs(d.mean())
    flips = [abs(np.mean(d * np.array(signs))) >= observed - 1e-9
             for signs in itertools.product((1, -1), repeat=len(d))]
    method, base = paired(list(d))
    assert stats.paired_comparison(method, base).p_value == pytest.approx(np.mean(flips), rel=1e-12)


def test_smallest_attainable_p_values():
    assert [stats.min_p_value(n) for n in (1, 3, 5, 6, 8)] == [1.0, 0.25, 0.0625, 0.03125, 0.0078125]
    assert stats.min_p_value(5) > stats.ALPHA > stats.min_p_value(6)  # 5 seeds can never reach p < 0.05
    # After Holm over k methods the most significant p is at least k · 2/2ⁿ.
    assert [stats.seeds_needed(k) for k in (1, 2, 3, 5, 6)] == [6, 7, 7, 8, 8]
    assert 5 * stats.min_p_value(7) > stats.ALPHA > 5 * stats.min_p_value(8)


# ---- intervals -------------------------------------------------------------------------------------------

FIXED = np.array([0.42, -0.13, 0.88, 0.35, 0.61, 0.07, 0.29])


def test_cell_interval_is_scipys_t_interval():
    interval = stats.mean_interval(list(FIXED))
    reference = sp.ttest_1samp(FIXED, 0.0).confidence_interval(0.95)
    assert (interval.low, interval.high) == pytest.approx((reference.low, reference.high), rel=1e-12)
    assert interval.method == "t"


def test_few_pairs_get_the_t_interval_many_the_bca_bootstrap():
    method, base = paired(list(FIXED[:6]))
    small = stats.paired_comparison(method, base)
    reference = sp.ttest_rel(list(method.values()), list(base.values())).confidence_interval(0.95)
    assert small.interval.method == "t"
    assert (small.interval.low, small.interval.high) == pytest.approx((reference.low, reference.high), rel=1e-9)

    d = np.random.default_rng(3).normal(0.5, 1.0, stats.BCA_MIN_SEEDS)
    interval = stats.difference_interval(d)
    reference = sp.bootstrap((d,), np.mean, method="BCa", n_resamples=stats.BOOTSTRAP_RESAMPLES,
                             rng=np.random.default_rng(stats.RNG_SEED)).confidence_interval
    assert interval.method == "BCa bootstrap"
    assert (interval.low, interval.high) == (reference.low, reference.high)
    assert stats.difference_interval(d) == interval  # a fixed seed: the same report every time


def test_identical_pair_gives_a_zero_width_interval_and_p_one():
    base = dict(enumerate(BASE))
    result = stats.paired_comparison(dict(base), base)
    assert (result.mean, result.interval.low, result.interval.high) == (0.0, 0.0, 0.0)
    assert result.p_value == 1.0
    [comparison] = stats.compare_with_baseline({"same": base}, base)
    assert (comparison.p_holm, comparison.verdict) == (1.0, "no detectable difference")


def test_identical_differences_give_a_zero_width_interval_at_that_difference():
    method, base = paired([0.5] * 6)
    result = stats.paired_comparison(method, base)
    assert result.interval.low == pytest.approx(0.5) and result.interval.high == pytest.approx(0.5)
    assert result.interval.half_width == pytest.approx(0.0, abs=1e-12)
    assert result.p_value == pytest.approx(2 / 64)  # every seed better: the smallest p six pairs allow
    assert stats.mean_interval([81.0, 81.0, 81.0]) == stats.Interval(81.0, 81.0, "t")


def test_one_seed_has_no_interval_and_no_verdict():
    assert stats.mean_interval([80.0]) is None
    result = stats.paired_comparison({0: 82.0}, {0: 80.0})
    assert (result.n, result.mean, result.interval, result.p_value) == (1, 2.0, None, 1.0)
    assert math.isnan(result.std) and math.isnan(result.mdd)
    [comparison] = stats.compare_with_baseline({"m": {0: 82.0}}, {0: 80.0})
    assert comparison.verdict == "n/a" and math.isnan(comparison.p_holm)


def test_only_the_seeds_both_methods_have_are_paired():
    result = stats.paired_comparison({0: 81.0, 1: 82.0, 2: 80.5, 4: 79.0}, {0: 80.0, 1: 80.5, 2: 80.0, 3: 81.0})
    assert result.seeds == (0, 1, 2) and result.only_method == (4,) and result.only_baseline == (3,)
    assert result.mean == pytest.approx((1.0 + 1.5 + 0.5) / 3)
    assert result.unpaired_note() == "seed 4 only for the method; seed 3 only for the baseline"
    assert result.unpaired_note("mixup", "vanilla") == "seed 4 only for mixup; seed 3 only for vanilla"
    assert stats.paired_comparison({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}).unpaired_note() == ""


def test_nan_accuracy_from_a_failed_trial_unpairs_its_seed():
    result = stats.paired_comparison({0: 81.0, 1: math.nan, 2: 80.5}, {0: 80.0, 1: 80.5, 2: None})
    assert result.seeds == (0,) and result.only_baseline == (1,)
    assert stats.mean_interval([81.0, math.nan, None, 83.0]) == stats.t_interval(np.array([81.0, 83.0]))
    none = stats.paired_comparison({0: math.nan}, {0: 80.0})
    assert none.n == 0 and math.isnan(none.mean) and math.isnan(none.p_value) and none.interval is None


# ---- several methods: Holm and the verdict -----------------------------------------------------------------


def test_holm_by_hand():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])  # capped at 1
    adjusted = stats.holm([0.02, math.nan, 0.04])  # NaN: not tested, not counted (m = 2)
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert stats.holm([]).size == 0


def test_verdicts_after_holm():
    base = dict(enumerate([80.0, 80.5, 79.8, 80.2, 80.1, 80.4, 79.9, 80.3]))
    better = {s: v + 1.0 + 0.1 * s for s, v in base.items()}  # every seed better: p = 2/256
    worse = {s: v - 2.0 + 0.05 * s for s, v in base.items()}
    mixed = {s: v + (0.3 if s % 2 else -0.3) for s, v in base.items()}
    rows = stats.compare_with_baseline({"better": better, "worse": worse, "mixed": mixed}, base)
    assert [r.verdict for r in rows] == ["better", "worse", "no detectable difference"]
    assert [r.paired.p_value for r in rows[:2]] == pytest.approx([2 / 256, 2 / 256])
    assert [r.p_holm for r in rows[:2]] == pytest.approx([3 * 2 / 256, 3 * 2 / 256])
    assert rows[0].significant and not rows[2].significant
    # The same wins on 3 seeds: the exact test cannot go below 0.25, so no verdict but "no detectable difference".
    three = stats.compare_with_baseline({"better": {s: better[s] for s in range(3)}},
                                        {s: base[s] for s in range(3)})
    assert three[0].paired.p_value == 0.25 and three[0].verdict == "no detectable difference"


def test_minimum_detectable_difference():
    assert math.isinf(stats.min_detectable_difference(1.0, 5))  # 5 pairs cannot reach p < 0.05
    assert stats.min_detectable_difference(0.0, 8) == 0.0
    assert math.isnan(stats.min_detectable_difference(1.0, 1))
    # Large n: the normal approximation (z₀.₉₇₅ + z₀.₈) · s/√n.
    z = sp.norm.ppf(0.975) + sp.norm.ppf(0.8)
    assert stats.min_detectable_difference(2.0, 400) == pytest.approx(z * 2.0 / 20, rel=0.01)
    # Independently: simulate paired t-tests with a true difference of the MDD; about 80 % reject.
    n, std = 8, 0.7
    mdd = stats.min_detectable_difference(std, n)
    draws = np.random.default_rng(0).normal(mdd, std, (20_000, n))
    power = np.mean(sp.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05)
    assert power == pytest.approx(0.8, abs=0.01)


# ---- across settings -------------------------------------------------------------------------------------


def test_iqm_and_probability_of_improvement_against_scipy():
    assert stats.iqm(np.arange(1.0, 9.0)) == 4.5  # the mean of 3, 4, 5, 6
    x = np.array([0.2, 0.5, 0.5, 0.9, 0.1])
    y = np.array([0.5, 0.3, 0.0, 0.7])
    assert stats.iqm(x) == sp.trim_mean(x, 0.25)
    u = sp.mannwhitneyu(x, y).statistic  # pairs x > y, ties half
    assert stats.probability_of_improvement(x, y) == pytest.approx(u / (len(x) * len(y)))


def test_normalised_scores_are_the_fraction_of_the_baseline_error_removed():
    assert stats.normalised_scores(np.array([90.0, 80.0, 70.0]), 80.0) == pytest.approx([0.5, 0.0, -0.5])


def test_one_setting_aggregate_is_scipys_percentile_bootstrap():
    method = [80.5, 81.2, 80.9, 81.7, 80.1, 81.0]
    baseline = [80.0, 80.4, 79.9, 80.8, 80.2, 80.1]
    result = stats.aggregate([method], [baseline])
    scores = stats.normalised_scores(np.array(method), float(np.mean(baseline)))
    assert result.iqm == pytest.approx(sp.trim_mean(scores, 0.25))
    reference = sp.bootstrap((scores,), lambda s, axis: sp.trim_mean(s, 0.25, axis=axis), method="percentile",
                             n_resamples=stats.AGGREGATE_RESAMPLES,
                             rng=np.random.default_rng(stats.RNG_SEED)).confidence_interval
    assert (result.iqm_interval.low, result.iqm_interval.high) == pytest.approx((reference.low, reference.high))
    assert result.improvement == pytest.approx(sp.mannwhitneyu(method, baseline).statistic / 36)


def test_aggregate_across_settings():
    baselines = [[70.0, 71.0, 72.0], [90.0, 90.5, 91.0], [50.0]]
    itself = stats.aggregate(baselines, baselines)
    assert itself.settings == 3 and itself.improvement == pytest.approx(0.5)
    assert itself.iqm_interval.low <= 0.0 <= itself.iqm_interval.high
    better = [[v + 5 for v in b] for b in baselines]
    result = stats.aggregate(better, baselines)
    assert result.improvement == 1.0 and result.improvement_interval == stats.Interval(
        1.0, 1.0, "percentile bootstrap (stratified)")  # every resample still wins everywhere
    # A setting where the method has no finite value is left out; one-seed settings alone give no interval.
    partial = stats.aggregate([[math.nan], [95.0], [55.0]], baselines)
    assert partial.settings == 2
    single = stats.aggregate([[55.0]], [[50.0]])
    assert single.iqm == pytest.approx(0.1) and single.iqm_interval is None and single.improvement == 1.0
    assert stats.aggregate([[math.nan]], [[50.0]]).settings == 0


def test_average_ranks():
    ranks = stats.average_ranks({
        "a": {"vanilla": 80.0, "mixup": 81.0, "cutmix": 81.0},  # mixup and cutmix tie: 1.5 each
        "b": {"vanilla": 70.0, "mixup": 69.0, "cutmix": math.nan},  # cutmix failed here: ranked elsewhere only
        "c": {"vanilla": 60.0, "mixup": 62.0, "cutmix": 61.0},
    })
    assert ranks == {"vanilla": pytest.approx((3 + 1 + 3) / 3), "mixup": pytest.approx((1.5 + 2 + 1) / 3),
                     "cutmix": pytest.approx((1.5 + 2) / 2)}


# ---- claims ----------------------------------------------------------------------------------------------


def test_claim_tolerance():
    assert stats.claim_tolerance(None, 1) == stats.MIN_TOLERANCE_POINTS
    assert stats.claim_tolerance(0.0, 2) == stats.MIN_TOLERANCE_POINTS  # two identical seeds
    assert stats.claim_tolerance(1.0, 2) == pytest.approx(sp.t.ppf(0.975, 1) / math.sqrt(2))
    three = np.array([94.0, 95.0, 93.0])
    interval = stats.mean_interval(list(three))
    assert stats.claim_tolerance(float(np.std(three, ddof=1)), 3) == pytest.approx(interval.half_width)
    assert stats.claim_tolerance(0.01, 3) < stats.MIN_TOLERANCE_POINTS  # from 3 seeds the interval alone


def test_interval_from_summary_statistics_is_the_same_t_interval():
    values = [94.0, 95.0, 93.0, 96.5]
    direct = stats.mean_interval(values)
    from_summary = stats.t_interval_from(float(np.mean(values)), float(np.std(values, ddof=1)), 4)
    assert (from_summary.low, from_summary.high) == pytest.approx((direct.low, direct.high))
    assert stats.t_interval_from(95.0, None, 1) is None
