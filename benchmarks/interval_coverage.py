"""How often does each 95 % interval of a mean paired difference cover the truth, at benchmark seed counts?

The evidence behind `mixbench.stats.BCA_MIN_SEEDS`: for n pairs drawn from a distribution with known mean 0,
the fraction of draws whose interval holds 0, for scipy's BCa bootstrap and for the Student-t interval.
`--shape heavy`: Student t with `--df` degrees of freedom (symmetric, heavier tails than normal, like seeds
where one run went astray); `--shape skewed`: a centred log-normal (σ = 1), where a symmetric interval is off.
Nominal: 0.95; the sampling error of a fraction over R draws is about sqrt(0.95 · 0.05 / R) (±0.013 at 300).

    python benchmarks/interval_coverage.py [--shape heavy|skewed] [--seeds 4 6 8 10 16 20 30] [--draws 300]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from scipy import stats

from mixbench.stats import BOOTSTRAP_RESAMPLES, RNG_SEED, t_interval


def draw(shape: str, n: int, df: float, rng: np.random.Generator) -> np.ndarray:
    if shape == "heavy":
        return rng.standard_t(df, n)
    return rng.lognormal(0.0, 1.0, n) - np.exp(0.5)  # the log-normal's mean is e^(σ²/2)


def coverage(shape: str, n: int, draws: int, df: float, rng: np.random.Generator) -> tuple[float, float]:
    bca = t = 0
    for _ in range(draws):
        sample = draw(shape, n, df, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a degenerate resample distribution: counted as a miss
            low, high = stats.bootstrap((sample,), np.mean, method="BCa", n_resamples=BOOTSTRAP_RESAMPLES,
                                        rng=rng).confidence_interval
        bca += bool(low <= 0 <= high)
        t += t_interval(sample).contains(0.0)
    return bca / draws, t / draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["heavy", "skewed"], default="heavy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 6, 8, 10, 16, 20, 30])
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--df", type=float, default=5.0, help="Student-t degrees of freedom of the differences")
    args = parser.parse_args()
    rng = np.random.default_rng(RNG_SEED)
    shape = f"t({args.df:g})" if args.shape == "heavy" else "centred log-normal(0, 1)"
    print(f"coverage of 95 % intervals, {args.draws} draws per n, differences ~ {shape}")
    print("| pairs | BCa bootstrap | Student t |\n|---:|---:|---:|")
    for n in args.seeds:
        bca, t = coverage(args.shape, n, args.draws, args.df, rng)
        print(f"| {n} | {bca:.3f} | {t:.3f} |", flush=True)


if __name__ == "__main__":
    main()
