"""The statistics behind a comparison: small, numpy only, each checked by hand in tests.

Every function takes scores where higher is better; the caller negates a metric that
is minimised (a loss) before asking, so "better" means one thing everywhere.
"""

import numpy as np

RESAMPLES = 10_000  # bootstrap resamples: the interval ends move < 0.01 between seeds
SEED = 0  # a fixed RNG seed, so that a report is the same each time it is written
# The fewest runs per choice for an interval and a verdict. A bootstrap of one run is
# that run ([x, x]); of two, three resample means. With 3 runs against 3, a verdict
# needs A to beat B in (nearly) every pair; below, the report says "too few runs".
MIN_RUNS = 3


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle half (a quarter, rounded down, cut
    from each end), robust to one bad seed (Agarwal et al. 2021)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    cut = len(ordered) // 4
    return float(ordered[cut : len(ordered) - cut].mean())


def bootstrap_ci(values, level: float = 0.95, resamples: int = RESAMPLES, seed: int = SEED):
    """Percentile bootstrap interval of the mean: resample the runs with replacement,
    take the mean of each resample, return the (1-level)/2 and (1+level)/2 quantiles."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[picks].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def prob_better(a, b) -> float:
    """P(X_A > X_B) over all pairs (one run of A, one run of B), ties counting 1/2:
    the Mann-Whitney U statistic divided by the number of pairs. Unpaired, so runs
    need not share seeds."""
    a, b = np.asarray(a, dtype=float)[:, None], np.asarray(b, dtype=float)[None, :]
    return float(((a > b) + 0.5 * (a == b)).mean())


def prob_better_ci(a, b, level: float = 0.95, resamples: int = RESAMPLES, seed: int = SEED):
    """Percentile bootstrap interval of prob_better, resampling A's and B's runs apart."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    picks_a = a[rng.integers(0, len(a), size=(resamples, len(a)))]  # (R, nA)
    picks_b = b[rng.integers(0, len(b), size=(resamples, len(b)))]  # (R, nB)
    wins = picks_a[:, :, None] > picks_b[:, None, :]  # (R, nA, nB)
    ties = picks_a[:, :, None] == picks_b[:, None, :]
    probs = (wins + 0.5 * ties).mean(axis=(1, 2))
    low, high = np.percentile(probs, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def verdict(low: float, high: float, name_a: str, name_b: str) -> str:
    """Bouthillier et al. (2021): A is better only when the interval of P(A > B) lies
    above 0.5 and reaches 0.75 (a meaningful effect); B symmetric; else no evidence."""
    if low > 0.5 and high >= 0.75:
        return f"{name_a} better"
    if high < 0.5 and low <= 0.25:
        return f"{name_b} better"
    return "no evidence"


def expected_max(values, n: int) -> float:
    """Expected best score of n trials drawn with replacement from these (Dodge et al.
    2019): sum_i v_(i) [(i/N)^n - ((i-1)/N)^n] over the sorted values v_(1..N)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    ranks = np.arange(1, len(ordered) + 1) / len(ordered)
    weights = ranks**n - (ranks - 1 / len(ordered)) ** n
    return float((ordered * weights).sum())
