"""Statistics over per-seed numbers: is a method's win real?

Pure functions on numbers (accuracies in %, one per seed); nothing here knows of files or records. The maths
comes from scipy.stats; what is written here is the protocol, i.e. which test, which interval and why.

The protocol (README "How mixbench compares methods")
-----------------------------------------------------
* **Paired by seed.** Trials that differ only in the method share the seed, hence the initialisation and the
  data order, so a method is compared with the baseline seed by seed: the differences d_i = method_i −
  baseline_i. Only seeds that both have (with a finite value) are paired; the others are listed, not guessed.
* **Effect size with its interval**: the mean of d with a 95 % confidence interval. With at least
  `BCA_MIN_SEEDS` pairs it is scipy's BCa bootstrap; below, the Student-t interval. Why: a bootstrap of a
  handful of values has few distinct resamples and is too narrow. In a simulation (300 draws per n;
  `benchmarks/interval_coverage.py`) BCa covered the true mean of heavy-tailed t₅ differences 78 % of the time
  at n = 4 and 85 % at n = 8, where the t-interval covered 93–97 %; on skewed (log-normal) differences BCa
  matched t at n = 20 (0.86 vs 0.85) and beat it at 30 (0.89 vs 0.86), where t's symmetry is wrong.
* **Test**: the exact sign-flip permutation test of mean(d) = 0 (`scipy.stats.permutation_test`,
  `permutation_type="samples"` on the paired values: under the null each pair's two values are exchangeable).
  It assumes nothing about the distribution, and it is honest about few seeds: with n pairs the smallest
  two-sided p it can give is 2/2ⁿ (`min_p_value`), so 5 seeds can never reach p < 0.05 and 3 never go below 0.25.
* **Several methods in one table**: Holm's step-down correction over the methods compared with the baseline
  (scipy has Benjamini–Hochberg, which controls the false discovery rate; Holm controls the chance of any
  false "better"/"worse" and is a few lines).
* **Verdict**: better / worse when the Holm-adjusted p < `ALPHA` (the sign of the mean difference says which),
  else "no detectable difference"; "n/a" with fewer than 2 pairs.
* **Minimum detectable difference**: the true mean difference a two-sided paired t-test at `ALPHA` would detect
  with 80 % power given the measured spread of the differences (scipy's noncentral t); infinite when n pairs
  cannot reach p < ALPHA at all. It says how small a win this many seeds could ever show.
* **One cell** (a method in one setting): the mean over seeds with its 95 % Student-t interval; none ("n/a")
  with one seed.
* **Across settings** (rliable-style, written on numpy/scipy since rliable is archived): scores normalised per
  setting as the fraction of the baseline's error removed, (acc − b) / (100 − b) with b the baseline's mean
  accuracy there (0: as good as the baseline, 1: no errors left, negative: worse), so that a point on an easy
  dataset and a point on a hard one weigh what they remove; the interquartile mean (IQM) of all runs' scores;
  the probability of improvement P(method > baseline) per setting (the Mann–Whitney U / nm, ties half),
  averaged over settings; 95 % percentile intervals from a stratified bootstrap (seeds resampled within each
  setting, each method on its own).
* **Claims**: a published number is reproduced when it lies inside the 95 % t-interval of the measured mean.
  With 1 seed there is no interval, and with 2 seeds a near-zero spread makes it vanishingly thin, so for 1–2
  seeds the claim may also be `MIN_TOLERANCE_POINTS` away.

Every resampling draws from `numpy.random.default_rng(RNG_SEED)`: a report is identical each time it is made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.8  # for the minimum detectable difference
BCA_MIN_SEEDS = 20  # below, the Student-t interval (see the module docstring for why)
BOOTSTRAP_RESAMPLES = 9999
AGGREGATE_RESAMPLES = 2000  # rliable's default for its stratified bootstrap
EXACT_MAX_SEEDS = 16  # up to 2^16 sign patterns enumerated; beyond, a fixed-seed random sample of them
RANDOM_PERMUTATIONS = 99_999
RNG_SEED = 0
MIN_TOLERANCE_POINTS = 0.3  # claims with 1-2 seeds: reproduced within this many points at least

Verdict = Literal["better", "worse", "no detectable difference", "n/a"]


def finite(values: Sequence[float | None]) -> np.ndarray:
    """The values that are numbers: None (no value recorded) and NaN (a failed or diverged trial) left out."""
    return np.array([float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=float)


def _rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


# ---- intervals -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str  # "t", "BCa bootstrap", "percentile bootstrap": what the report says it is

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def t_interval_from(mean: float, std: float | None, n: int, confidence: float = CONFIDENCE) -> Interval | None:
    """Mean ± t(n−1) · s/√n from a mean, a sample std and n; None with fewer than 2 values; zero width with
    no spread."""
    if n < 2 or std is None or not math.isfinite(std):
        return None
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1) * std / math.sqrt(n))
    return Interval(mean - half, mean + half, "t")


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> Interval | None:
    """The Student-t interval of the mean of `values`."""
    n = len(values)
    if n < 2:
        return None
    return t_interval_from(float(np.mean(values)), float(np.std(values, ddof=1)), n, confidence)


def mean_interval(values: Sequence[float | None]) -> Interval | None:
    """95 % Student-t interval of the mean over seeds (one cell of a table); None ("n/a") with one seed."""
    return t_interval(finite(values))


def difference_interval(differences: np.ndarray) -> Interval | None:
    """95 % interval of the mean paired difference: BCa bootstrap from `BCA_MIN_SEEDS` pairs, else Student t.

    All differences equal: the zero-width t-interval at that value (every resample has the same mean, and
    scipy's BCa is undefined there). A BCa result scipy cannot compute (NaN) falls back on t as well.
    """
    n = len(differences)
    if n < 2:
        return None
    if np.all(differences == differences[0]):
        value = float(differences[0])
        return Interval(value, value, "t")
    if n >= BCA_MIN_SEEDS:
        result = stats.bootstrap((differences,), np.mean, method="BCa", confidence_level=CONFIDENCE,
                                 n_resamples=BOOTSTRAP_RESAMPLES, rng=_rng())
        low, high = result.confidence_interval
        if math.isfinite(low) and math.isfinite(high):
            return Interval(float(low), float(high), "BCa bootstrap")
    return t_interval(differences)


# ---- the paired test -------------------------------------------------------------------------------------


def min_p_value(n: int) -> float:
    """The smallest two-sided p the exact sign-flip test can give with n pairs: 2/2ⁿ (1 for n ≤ 1)."""
    return 1.0 if n <= 1 else 2.0 / 2**n


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def sign_flip_p_value(method: np.ndarray, baseline: np.ndarray) -> float:
    """Two-sided p of the exact paired permutation test (all 2ⁿ swaps within pairs); NaN with no pair, 1 with
    one (its two sign patterns have the same |mean|; scipy wants two values per sample)."""
    n = len(method)
    if n <= 1:
        return math.nan if n == 0 else 1.0
    exact = n <= EXACT_MAX_SEEDS
    result = stats.permutation_test((method, baseline), _mean_difference, permutation_type="samples",
                                    vectorized=True, alternative="two-sided",
                                    n_resamples=np.inf if exact else RANDOM_PERMUTATIONS, rng=_rng())
    return float(result.pvalue)


def min_detectable_difference(std: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The mean paired difference a two-sided paired t-test at `alpha` detects with probability `power`,
    given the differences' sample std and n pairs (noncentral t). Infinite when n pairs cannot reach p < alpha
    in the sign-flip test; NaN with fewer than 2 pairs; 0 with no spread."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    if min_p_value(n) > alpha:
        return math.inf
    if std == 0:
        return 0.0
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(noncentrality: float) -> float:
        # The far tail (rejecting on the wrong side) is ~0 here, and scipy's nct.cdf turns NaN that far out.
        wrong_side = float(np.nan_to_num(stats.nct.cdf(-critical, df, noncentrality), nan=0.0))
        return stats.nct.sf(critical, df, noncentrality) + wrong_side - power

    # From n = 6 on (the fewest pairs that can reach p < 0.05) the root lies below 5.
    noncentrality = optimize.brentq(shortfall, 0.0, 20.0)
    return float(noncentrality * std / math.sqrt(n))


@dataclass(frozen=True)
class Paired:
    """A method against the baseline, seed by seed."""

    seeds: tuple[int, ...]  # the paired seeds
    only_method: tuple[int, ...]  # seeds with a value for the method only (left out)
    only_baseline: tuple[int, ...]  # ... for the baseline only
    mean: float  # mean of method − baseline over the paired seeds; NaN with none
    std: float  # sample std of the differences; NaN with fewer than 2
    interval: Interval | None
    p_value: float
    min_p: float
    mdd: float  # minimum detectable difference, see `min_detectable_difference`

    @property
    def n(self) -> int:
        return len(self.seeds)

    def unpaired_note(self, method: str = "the method", baseline: str = "the baseline") -> str:
        """Which seeds could not be paired, e.g. "seed 3 only for the baseline"; empty when all paired."""
        parts = []
        for seeds, whom in ((self.only_method, method), (self.only_baseline, baseline)):
            if seeds:
                parts.append(f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))} only for {whom}")
        return "; ".join(parts)


def _values_by_seed(values: Mapping[int, float | None]) -> dict[int, float]:
    return {seed: float(v) for seed, v in values.items() if v is not None and math.isfinite(float(v))}


def paired_comparison(method: Mapping[int, float | None], baseline: Mapping[int, float | None]) -> Paired:
    """Compare `method` with `baseline`, both {seed: value}; a missing or non-finite value unpairs its seed."""
    mine, base = _values_by_seed(method), _values_by_seed(baseline)
    seeds = tuple(sorted(mine.keys() & base.keys()))
    x = np.array([mine[s] for s in seeds])
    y = np.array([base[s] for s in seeds])
    differences = x - y
    n = len(seeds)
    std = float(np.std(differences, ddof=1)) if n > 1 else math.nan
    return Paired(
        seeds=seeds,
        only_method=tuple(sorted(mine.keys() - base.keys())),
        only_baseline=tuple(sorted(base.keys() - mine.keys())),
        mean=float(np.mean(differences)) if n else math.nan,
        std=std,
        interval=difference_interval(differences),
        p_value=sign_flip_p_value(x, y),
        min_p=min_p_value(n),
        mdd=min_detectable_difference(std, n),
    )


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order; NaN entries stay NaN and are not counted.

    Sorted ascending, the i-th of m p-values (i from 0) becomes max over j ≤ i of min(1, (m − j)·p_(j)).
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def seeds_needed(comparisons: int = 1, alpha: float = ALPHA) -> int:
    """The fewest paired seeds with which the exact test can declare a difference after Holm over
    `comparisons` methods: the smallest n with comparisons · 2/2ⁿ < alpha (6 for one method, 8 for five)."""
    n = 1
    while comparisons * min_p_value(n) >= alpha:
        n += 1
    return n


def verdict(mean: float, p_adjusted: float, n: int, alpha: float = ALPHA) -> Verdict:
    if n < 2 or not math.isfinite(p_adjusted):
        return "n/a"
    if p_adjusted < alpha:
        return "better" if mean > 0 else "worse"
    return "no detectable difference"


@dataclass(frozen=True)
class Comparison:
    """One method's row of a paired table: its comparison, the Holm-adjusted p and the verdict."""

    method: str
    paired: Paired
    p_holm: float
    verdict: Verdict

    @property
    def significant(self) -> bool:
        return self.verdict in ("better", "worse")


def compare_with_baseline(
    methods: Mapping[str, Mapping[int, float | None]], baseline: Mapping[int, float | None]
) -> list[Comparison]:
    """Every method of one table against the baseline, Holm-corrected over the methods (in their order)."""
    paired = [paired_comparison(values, baseline) for values in methods.values()]
    adjusted = holm([p.p_value if p.n >= 2 else math.nan for p in paired])
    return [Comparison(name, p, float(a), verdict(p.mean, float(a), p.n))
            for name, p, a in zip(methods, paired, adjusted, strict=True)]


# ---- across settings ---------------------------------------------------------------------------------------


def normalised_scores(accuracies: np.ndarray, baseline_mean: float) -> np.ndarray:
    """The fraction of the baseline's error (in %) a run removes: (acc − b) / (100 − b)."""
    return (np.asarray(accuracies, dtype=float) - baseline_mean) / (100.0 - baseline_mean)


def iqm(scores: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50 % (scipy's 25 % trimmed mean, as rliable computes it)."""
    return stats.trim_mean(scores, 0.25, axis=axis)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + ½ P(X = Y) over all pairs of runs (the Mann–Whitney U over n·m), along the last axis."""
    x, y = np.asarray(x)[..., :, None], np.asarray(y)[..., None, :]
    return np.mean((x > y) + 0.5 * (x == y), axis=(-2, -1))


def _stratified_interval(strata: Sequence[np.ndarray], statistic) -> Interval | None:
    """Percentile interval of `statistic(list of strata)` with each stratum resampled on its own (scipy's
    multi-sample bootstrap). A one-value stratum resamples to itself and is held fixed; none with 2+: None."""
    moving = [i for i, s in enumerate(strata) if len(s) > 1]
    if not moving:
        return None

    def resampled(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = samples[0].shape[:-1]
        full = [np.broadcast_to(s, (*batch, len(s))) for s in strata]
        for i, sample in zip(moving, samples, strict=True):
            full[i] = sample
        return statistic(full)

    result = stats.bootstrap([strata[i] for i in moving], resampled, method="percentile", vectorized=True,
                             confidence_level=CONFIDENCE, n_resamples=AGGREGATE_RESAMPLES, rng=_rng())
    low, high = result.confidence_interval
    return Interval(float(low), float(high), "percentile bootstrap (stratified)")


@dataclass(frozen=True)
class Aggregate:
    """A method across settings, against the baseline."""

    settings: int  # settings where both the method and the baseline have runs
    iqm: float
    iqm_interval: Interval | None
    improvement: float  # probability of improvement over the baseline, averaged over settings
    improvement_interval: Interval | None


def aggregate(method: Sequence[Sequence[float | None]], baseline: Sequence[Sequence[float | None]]) -> Aggregate:
    """`method[s]` and `baseline[s]`: the accuracies (%) of each seed in setting s (same settings, same order).
    Settings where either has no finite value are left out."""
    pairs = [(finite(m), finite(b)) for m, b in zip(method, baseline, strict=True)]
    kept = [(m, b) for m, b in pairs if len(m) and len(b)]
    if not kept:
        return Aggregate(0, math.nan, None, math.nan, None)
    scores = [normalised_scores(m, float(np.mean(b))) for m, b in kept]
    k = len(kept)

    def iqm_of(strata: list[np.ndarray]) -> np.ndarray:
        return iqm(np.concatenate(strata, axis=-1), axis=-1)

    def improvement_of(strata: list[np.ndarray]) -> np.ndarray:
        return np.mean([probability_of_improvement(strata[i], strata[k + i]) for i in range(k)], axis=0)

    both = [m for m, _ in kept] + [b for _, b in kept]
    return Aggregate(
        settings=k,
        iqm=float(iqm_of(scores)),
        iqm_interval=_stratified_interval(scores, iqm_of),
        improvement=float(improvement_of(both)),
        improvement_interval=_stratified_interval(both, improvement_of),
    )


def average_ranks(means: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{setting: {method: mean accuracy}} -> {method: mean rank over the settings it ran in} (1 = best; ties
    share their average rank; a method is ranked among the methods present in each setting)."""
    ranks: dict[str, list[float]] = {}
    for by_method in means.values():
        present = {m: v for m, v in by_method.items() if v is not None and math.isfinite(v)}
        if not present:
            continue
        for method, rank in zip(present, stats.rankdata([-v for v in present.values()]), strict=True):
            ranks.setdefault(method, []).append(float(rank))
    return {method: float(np.mean(r)) for method, r in ranks.items()}


# ---- claims ----------------------------------------------------------------------------------------------


def claim_tolerance(std: float | None, n: int) -> float:
    """How far a published number may be from the measured mean and count as reproduced: the half-width of
    the mean's 95 % t-interval; with 1–2 seeds at least `MIN_TOLERANCE_POINTS` (1 seed: only that)."""
    interval = t_interval_from(0.0, std, n)
    if interval is None:
        return MIN_TOLERANCE_POINTS
    return max(interval.high, MIN_TOLERANCE_POINTS) if n <= 2 else interval.high
