"""How often does each 95 % interval of a mean paired difference cover the truth, at benchmark seed counts?

The evidence behind `mixbench.stats.BCA_MIN_SEEDS`: for n pairs drawn from a distribution with known mean 0
(Student t with `--df` degrees of freedom: heavier tails than normal, like seeds where one run went astray),
the fraction of draws whose interval holds 0, for scipy's BCa bootstrap and for the Student-t interval.
Nominal: 0.95; the sampling error of a fraction over R draws is about sqrt(0.95 · 0.05 / R) (±0.013 at 300).

    python benchmarks/interval_coverage.py [--seeds 4 6 8 10 16 20 30] [--draws 300] [--df 5]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from scipy import stats

from mixbench.stats import BOOTSTRAP_RESAMPLES, RNG_SEED, t_interval


def coverage(n: int, draws: int, df: float, rng: np.random.Generator) -> tuple[float, float]:
    bca = t = 0
    for _ in range(draws):
        sample = rng.standard_t(df, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a degenerate resample distribution: counted as a miss
            low, high = stats.bootstrap((sample,), np.mean, method="BCa", n_resamples=BOOTSTRAP_RESAMPLES,
                                        rng=rng).confidence_interval
        bca += bool(low <= 0 <= high)
        t += t_interval(sample).contains(0.0)
    return bca / draws, t / draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 6, 8, 10, 16, 20, 30])
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--df", type=float, default=5.0, help="Student-t degrees of freedom of the differences")
    args = parser.parse_args()
    rng = np.random.default_rng(RNG_SEED)
    print(f"coverage of 95 % intervals, {args.draws} draws per n, differences ~ t({args.df:g})")
    print("| pairs | BCa bootstrap | Student t |\n|---:|---:|---:|")
    for n in args.seeds:
        bca, t = coverage(n, args.draws, args.df, rng)
        print(f"| {n} | {bca:.3f} | {t:.3f} |", flush=True)


if __name__ == "__main__":
    main()
